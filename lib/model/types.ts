/**
 * The contract between the language model (lib/model) and the code that hooks into it
 * (activation collection, SAE splicing, steering). Hook names follow TransformerLens.
 */
import type * as tf from '@tensorflow/tfjs-core';

export interface GPT2Config {
  vocabSize: number;
  nCtx: number; // n_positions
  dModel: number; // n_embd
  nLayer: number;
  nHead: number;
  layerNormEps: number; // 1e-5 in GPT-2
}

/** 'blocks.{l}.hook_resid_pre' | 'blocks.{l}.hook_resid_post' */
export type HookName = string;

/**
 * A hook replaces the activation at a named point: x [B, T, d] -> x' [B, T, d].
 * Identity = read; x => x.add(v) = add a vector; x => f(x) = replace (e.g. SAE reconstruction).
 * The function runs inside the model's tf.tidy: it must not dispose x.
 */
export type HookFn = (x: tf.Tensor3D) => tf.Tensor3D;
export type Hooks = Partial<Record<HookName, HookFn>>;

export function residHookName(layer: number, site: 'resid_pre' | 'resid_post'): HookName {
  return `blocks.${layer}.hook_${site}`;
}

export interface ActivationAndGrad {
  /** Activation at the hook, [B*T, d] row-major (row = b*T + t). */
  x: Float32Array;
  /**
   * dL/dx at the hook, [B*T, d], where L is the per-sequence SUM of next-token cross-entropies
   * (not the batch mean), so g does not shrink with the batch size.
   */
  g: Float32Array;
  /** Next-token cross-entropy per position, [B*T] (nats). */
  lossPerToken: Float32Array;
}

export interface HookedLM {
  readonly config: GPT2Config;
  /**
   * Logits [B, T, V] for int32 tokens [B, T], with optional hooks. The caller disposes the result.
   * `opts.from` (optional support, like fusedCeKl's): start at a resid_pre site with given activations.
   */
  logits(tokens: tf.Tensor2D, hooks?: Hooks, opts?: { from?: PassStart }): tf.Tensor3D;
  /** Whether logits() and fusedCeKl() can start a pass at this hook (`from`). */
  canStartAt?(hook: HookName): boolean;
  /**
   * Optional: the final hidden state [B·T, d] of logits()'s pass (same arguments), with logits =
   * hF · unembedding()ᵀ — for heads that compute the logits where they use them (steering's scorer
   * on wasm+ort), so no [B·T, V] tensor leaves them. The caller disposes the result.
   */
  finalHidden?(tokens: tf.Tensor2D, hooks?: Hooks, opts?: { from?: PassStart }): tf.Tensor2D;
  /** With finalHidden: the unembedding [V, d] (owned by the model). */
  unembedding?(): tf.Tensor2D;
  /**
   * One forward+backward pass on sequences of T+1 tokens (inputs = tokens[:, :T], targets =
   * tokens[:, 1:]): the activation at `hook`, the gradient of the summed loss w.r.t. it, and the
   * per-position losses. No parameter gradients are computed.
   */
  activationAndGrad(tokens: Int32Array, batch: number, seqLen: number, hook: HookName): ActivationAndGrad;
  /**
   * Optional: the activation at `hook` alone (the same x as activationAndGrad's), computing only
   * the layers below it: no head, no backward pass.
   */
  activations?(tokens: Int32Array, batch: number, seqLen: number, hook: HookName): Float32Array;
  /**
   * Optional fused head (GPT2 on wasm+ort): per-position CE of a hooked forward against targets
   * and, with `opts.ref` (the ref of an earlier call made with `keepRef`, e.g. the clean pass),
   * KL(ref ‖ this) per position, without materialising the [B·T, V] logits outside the model.
   * `ref.release()` frees what the ref keeps.
   */
  fusedCeKl?(tokens: tf.Tensor2D, targets: Int32Array, opts?: FusedCeKlOptions): FusedCeKlResult | null;
  dispose(): void;
}

export interface FusedCeKlOptions {
  hooks?: Hooks;
  /** A pass made with keepRef: the KL is taken against it. */
  ref?: FusedRef;
  /**
   * The same reference as per-position arrays (what `ref.rows()` of a keepRef pass over the same
   * positions returned, e.g. stored by an earlier stage); used when `ref` is not given.
   */
  refRows?: FusedRefRows;
  /** Keep what later KLs against this pass need in the returned ref (the wasm+ort head keeps pᵀ wte and −H(p) per row, not p); default false. */
  keepRef?: boolean;
  /**
   * Start the pass at resid_pre of a layer with these activations [B, T, d] instead of the token
   * embedding (the layers below are skipped; hooks at that site still apply). Exactly the full
   * pass when x is the activation the full pass computes there.
   */
  from?: PassStart;
}

/** Where a pass starts instead of the token embedding: resid_pre of a layer, with its activations [B, T, d]. */
export interface PassStart {
  hook: HookName;
  x: tf.Tensor;
}

export interface FusedCeKlResult {
  ce: Float32Array;
  kl: Float32Array | null;
  ref: FusedRef;
}

/** What a pass keeps for a later KL (see HookedLM.fusedCeKl). */
export interface FusedRef {
  release(): void;
  /** The kept reference as per-position arrays (copies), when the implementation has them. */
  rows?(): FusedRefRows;
}

/** A KL reference per position: w̄ = pᵀ wte [N·d] and a = h·w̄ − lse = −H(p) [N] (see ceKlGraph). */
export interface FusedRefRows {
  wbar: Float32Array;
  a: Float32Array;
}
