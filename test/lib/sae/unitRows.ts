/** m random rows of dimension d with unit norm (a decoder as the SAE contract wants it), drawn from z. */
export function unitRows(m: number, d: number, z: () => number): Float32Array {
  const W = new Float32Array(m * d);
  for (let j = 0; j < m; j++) {
    let n = 0;
    for (let i = 0; i < d; i++) n += (W[j * d + i] = z()) ** 2;
    for (let i = 0; i < d; i++) W[j * d + i] /= Math.sqrt(n);
  }
  return W;
}
