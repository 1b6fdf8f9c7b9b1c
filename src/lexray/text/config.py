"""Configuration dataclasses of the text stage (one frozen dataclass per component)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class LatentPoolingConfig:
    """Latent-attention pooling as in NV-Embed / the published CXR encoder."""

    num_latents: int = 512  # trainable latent vectors used as keys and values
    num_heads: int = 8  # attention heads (hidden size must be divisible by it)
    mlp_ratio: int = 4  # hidden width of the MLP after attention, as a multiple of the hidden size
    residual: bool = True  # add attention and MLP outputs to their inputs (false: the published pooler)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (peft) on the backbone."""

    enabled: bool = (
        False  # wrap the backbone with LoRA adapters; when false the backbone is frozen or fully tuned
    )
    r: int = 16  # adapter rank (published: 16)
    alpha: int = 32  # scaling numerator; the update is scaled by alpha / r
    dropout: float = 0.05  # dropout on the adapter input
    target_modules: tuple[
        str, ...
    ] = ()  # module names to wrap; empty = the architecture's q/k/v/o from the table
    last_n_layers: int = 0  # put adapters only in the last N layers (0 = all); backward then stops early


@dataclass(frozen=True)
class TextEncoderConfig:
    """How a transformers model becomes a report encoder; saved with every encoder directory."""

    model: str = "smollm2-135m"  # base model: alias, local directory or hub id
    pooling: Literal["mean", "last", "latent", "cls"] = "mean"  # token pooling (cls: first position)
    instruction: str = ""  # prefix that conditions the encoding; its tokens are excluded from pooling
    max_length: int = 512  # tokens per text including instruction and special tokens (longer texts are cut)
    bidirectional: bool = True  # remove the causal mask of decoder LLMs (no effect on BERT-like encoders)
    padding_side: Literal["right", "left"] = (
        "right"  # padding side of batches (positions are mask-derived either way)
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weight dtype of the backbone
    num_layers: int = (
        0  # keep only the first N transformer blocks (0 = all); early layers of small LLMs embed better
    )
    final_norm: bool = (
        True  # apply the backbone's final norm (trained for the full depth; off pools the raw states)
    )
    separator: str = ""  # llm2vec rule when set: pool the last n tokens, n = token count of the text after it
    marker_instructions: dict[str, str] = field(
        default_factory=dict
    )  # separator rule: a text containing a key gets that instruction instead of `instruction` (first match)
    append_eos: bool | None = None  # append EOS after the text; None = the architecture table's choice
    pool_special_tokens: bool = False  # also pool special tokens ([CLS]/[SEP]/BOS), as plain masked means do
    position_ids: Literal["mask", "arange"] = (
        "mask"  # mask: counted over real tokens; arange: 0..T-1 over the padded row (transformers default)
    )
    latent: LatentPoolingConfig = field(default_factory=LatentPoolingConfig)  # used when pooling == "latent"
    lora: LoraSettings = field(default_factory=LoraSettings)  # adapters applied at load time when enabled


@dataclass(frozen=True)
class StageConfig:
    """What every training stage sets alike: whether it runs, its length and its AdamW schedule."""

    enabled: bool = True  # run this stage
    steps: int = 100  # optimizer steps
    # Each stage sets its own default; declared here so that it keeps its place after ``steps`` in every
    # stage's fields, and so in the saved config.yaml (a field declared only in a subclass comes last).
    batch_size: int = 16  # examples per step (per process)
    lr: float = 1e-4  # peak learning rate (AdamW, linear warmup then linear decay)
    warmup_steps: int = 10  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay


@dataclass(frozen=True)
class MNTPConfig(StageConfig):
    """Stage 1: masked next-token prediction over the train reports (LLM2Vec)."""

    batch_size: int = 8  # reports per step (per process)
    mask_prob: float = 0.2  # fraction of report tokens masked (published: 20%)
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    lora: LoraSettings = field(
        default_factory=lambda: LoraSettings(enabled=True)
    )  # adapters trained in this stage


@dataclass(frozen=True)
class ContrastiveConfig(StageConfig):
    """Stage 2: supervised contrastive learning on report variants (InfoNCE)."""

    batch_size: int = 16  # anchors per step (per process)
    scale: float = 50.0  # cosine similarity multiplier (= 1 / temperature; published 50)
    symmetric: bool = False  # also score positives -> anchors
    hard_negatives: int = 1  # error variants per anchor added as hard negatives
    chunk_size: int = 0  # GradCache chunk (texts per forward); 0 = embed the whole batch at once
    length_buckets: int = 1  # without GradCache: forwards per step, texts grouped by length (less padding)
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    pairs_per_study: int = 2  # variant pairs sampled per study and epoch
    findings_impression: bool = True  # add findings <-> impression pairs
    relayout: bool = (
        True  # draw each whole report's section-header layout at random (headers carry no signal)
    )
    weight_interpolation: float = 1.0  # WiSE-FT: keep this fraction of the learned LoRA update (1 = all)
    reword_negatives: float = 0.0  # chance that a hard negative is reworded (rule synonyms, reordering)
    mask_same_labels: bool = True  # mask in-batch negatives whose finding labels equal the anchor's
    lora: LoraSettings = field(
        default_factory=lambda: LoraSettings(enabled=True)
    )  # adapters trained in this stage


@dataclass(frozen=True)
class TextDataConfig:
    """Where training reports and variants come from (train split only)."""

    openi: str = ""  # Open-i report archive (NLMCXR_reports.tgz or extracted folder); "" = use manifest
    split_file: str = ""  # split JSON for Open-i (e.g. r2gen_split.json)
    manifest: str = ""  # a lexray manifest.parquet instead of the Open-i archive
    split: str = "train"  # the only split trained on
    max_studies: int = 0  # cap on studies (0 = all), for smoke runs
    variant_store: str = (
        ""  # optional VariantStore directory with LLM variants; rule variants are always made
    )
    styles: tuple[str, ...] = ()  # rule styles to generate (empty = all the variants package offers)
    error_types: tuple[str, ...] = ()  # error types to generate (empty = all)
    use_labeler: bool = True  # label source reports for false-negative masking (variant checks always label)
    fabricated_studies: float = (
        0.0  # share (0-1) of the sided fabricated-finding error variants that also become synthetic studies
    )
    distinct_positives: bool = False  # drop equivalent variants that reports with other content share


@dataclass(frozen=True)
class TextTrainConfig:
    """A full text-encoder training run: MNTP then contrastive."""

    output_dir: str = "runs/text"  # run directory; the final encoder is saved here
    seed: int = 0  # seed of sampling, masking and initialisation
    threads: int = 0  # torch CPU threads (0 = torch default; 1 is fastest on an oversubscribed machine)
    save: Literal["merged", "adapter"] = "merged"  # how the final encoder stores its weights
    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)  # the encoder being trained
    data: TextDataConfig = field(default_factory=TextDataConfig)  # training data
    mntp: MNTPConfig = field(default_factory=MNTPConfig)  # stage 1
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)  # stage 2
    log_every: int = 5  # steps between metric log lines
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # Accelerate autocast mode
    eval_bench: str = (
        ""  # textbench JSONL scored during the contrastive stage (evaluation only, never trained on)
    )
    eval_every: int = 0  # contrastive steps between bench scores (0 = never)
    save_every: int = 0  # optimizer steps (MNTP, then contrastive) between resumable checkpoints (0 = none)
    keep_checkpoints: int = 1  # most recent checkpoints kept in output_dir/checkpoints
    resume: bool = True  # continue from the latest checkpoint in output_dir when there is one
