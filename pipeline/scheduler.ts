/**
 * The run loop: an instance is checked against the cache once all its inputs are settled, skipped
 * when one failed or was skipped, and run (plan order, at most `jobs` at once) when it is not cached.
 * Every change of state calls pump() again; run() resolves when every instance is settled.
 */
import * as os from 'node:os';
import { checkCache, type NodeState, recordResult, type RunContext, runInstance } from './instance.ts';

const SETTLED: readonly NodeState['status'][] = ['cached', 'ran', 'failed', 'skipped'];

export class Scheduler {
  private readonly ready: NodeState[] = [];
  /** Instances not yet checked or skipped, in plan order (each pump looks at these only). */
  private readonly pending = new Set<NodeState>();
  /** Each instance's inputs' states. */
  private readonly deps = new Map<NodeState, NodeState[]>();
  private running = 0;
  private done: { resolve: () => void; reject: (e: unknown) => void } | undefined;

  constructor(
    private readonly ctx: RunContext,
    private readonly jobs: number,
  ) {}

  run(): Promise<void> {
    for (const node of this.ctx.nodes.values()) {
      if (node.status === 'pending') this.pending.add(node);
      this.deps.set(node, node.inst.inputs.flatMap((e) => e.from).map((l) => this.ctx.nodes.get(l)!));
    }
    return new Promise<void>((resolve, reject) => {
      this.done = { resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    try {
      this.checkUnblocked();
      this.startReady();
      if (this.ctx.interrupted) for (const node of this.ready.splice(0)) this.skip(node, 'run interrupted');
      if (this.running === 0 && this.pending.size === 0 && this.allSettled()) this.done!.resolve();
    } catch (e) {
      this.done!.reject(e);
    }
  }

  private allSettled(): boolean {
    for (const n of this.ctx.nodes.values()) if (!SETTLED.includes(n.status)) return false;
    return true;
  }

  private skip(node: NodeState, reason: string): void {
    node.reason = reason;
    recordResult(this.ctx, node, 'skipped', new Date());
  }

  /** Pending instances whose inputs are all settled: skipped, or checked against the cache. */
  private checkUnblocked(): void {
    const { ctx } = this;
    for (const node of this.pending) {
      if (node.status !== 'pending') {
        this.pending.delete(node);
        continue;
      }
      const deps = this.deps.get(node)!;
      const bad = deps.find((d) => d.status === 'failed' || d.status === 'skipped');
      if (bad || ctx.interrupted) {
        this.pending.delete(node);
        this.skip(node, ctx.interrupted ? 'run interrupted' : `input ${bad!.inst.id} ${bad!.status === 'failed' ? 'failed' : 'was skipped'}`);
        continue;
      }
      if (!deps.every((d) => d.status === 'cached' || d.status === 'ran')) continue;
      this.pending.delete(node);
      node.status = 'evaluating';
      checkCache(ctx, node).then(
        () => this.onChecked(node),
        (e: unknown) => {
          node.reason = `could not check the cache: ${(e as Error).message}`;
          recordResult(ctx, node, 'failed', new Date());
          this.pump();
        },
      );
    }
  }

  private onChecked(node: NodeState): void {
    if (node.status === 'ready') {
      if (this.ctx.interrupted) {
        this.skip(node, 'run interrupted');
      } else {
        this.ready.push(node);
        this.ready.sort((a, b) => a.index - b.index);
      }
    }
    this.pump();
  }

  /**
   * The cores are shared by the instances that run at once: the one starting, the running ones, and
   * those about to start (ready, or whose cache check is under way).
   */
  private coresEach(): number {
    // By status, not by this.ready: a check that just finished has set 'ready' before onChecked
    // queues it (with fast cache checks, two finish in the same tick).
    let soon = this.running;
    for (const n of this.ctx.nodes.values()) if (n.status === 'evaluating' || n.status === 'ready') soon++;
    return Math.max(1, Math.floor(os.availableParallelism() / Math.min(this.jobs, soon)));
  }

  /** Start ready instances in plan order while fewer than `jobs` run. */
  private startReady(): void {
    while (this.running < this.jobs && this.ready.length > 0 && !this.ctx.interrupted) {
      const node = this.ready.shift()!;
      node.status = 'running';
      this.running++;
      node.cpus = this.coresEach();
      runInstance(this.ctx, node)
        .catch((e: unknown) => {
          node.reason = `${node.reason}; engine error: ${(e as Error).message}`;
          recordResult(this.ctx, node, 'failed', new Date());
        })
        .finally(() => {
          this.running--;
          this.pump();
        });
    }
  }
}
