"""The shipped Accelerate configs: they parse, FSDP's wrap policy finds the LLM's blocks, DeepSpeed
agrees with the paper recipe, and loops with several backward passes per update refuse DeepSpeed.

FSDP and DeepSpeed need GPUs (Accelerate falls back to DDP on a CPU); README says what runs where.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "accelerate"


@pytest.mark.parametrize(
    "name,kind",
    [
        ("ddp", "MULTI_GPU"),
        ("deepspeed-zero1", "DEEPSPEED"),
        ("deepspeed-zero2", "DEEPSPEED"),
        ("fsdp", "FSDP"),
        ("cpu-gloo", "MULTI_GPU"),
    ],
)
def test_accelerate_configs_parse_as_one_node(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIGS / f"{name}.yaml"))
    assert config.distributed_type.value == kind and config.num_machines == 1
    assert config.mixed_precision == "no"  # precision belongs to the lexray recipe


def test_fsdp_config_builds_a_plugin_that_wraps_the_llm_blocks(tiny_llama):
    from accelerate.utils import FullyShardedDataParallelPlugin

    from lexray.text import TextEncoder
    from lexray.training import build_adamw, param_groups

    fsdp = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())["fsdp_config"]
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"],
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        transformer_cls_names_to_wrap=[fsdp["fsdp_transformer_layer_cls_to_wrap"]],
        reshard_after_forward=fsdp["fsdp_reshard_after_forward"],
        state_dict_type=fsdp["fsdp_state_dict_type"],
        cpu_offload=fsdp["fsdp_offload_params"],
    )
    encoder = TextEncoder.from_pretrained(str(tiny_llama), lora={"enabled": True, "r": 4})
    plugin.set_auto_wrap_policy(encoder)
    wrapped = [
        n for n, m in encoder.named_modules() if plugin.auto_wrap_policy(m, recurse=False, nonwrapped_numel=0)
    ]
    assert len(wrapped) == encoder.base_model().config.num_hidden_layers  # one FSDP unit per block
    optimizer = build_adamw(param_groups(encoder, 1e-4, 0.05), 1e-4)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(
        p.requires_grad for p in encoder.parameters()
    )


@pytest.mark.parametrize("name", ["deepspeed-zero1", "deepspeed-zero2"])
def test_deepspeed_configs_clip_like_the_paper_clip_recipe(name):
    from lexray.clip.train import load_train_config

    ds = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["deepspeed_config"]
    recipe = load_train_config(REPO / "configs/clip/paper-gpu.yaml")
    assert ds["gradient_clipping"] == recipe.optim.grad_clip and recipe.grad_accum == 1
    assert ds["gradient_accumulation_steps"] == 1 and ds["zero_stage"] in (1, 2)


def test_several_backward_passes_per_update_refuse_deepspeed():
    from accelerate.utils import DistributedType

    from lexray.errors import LexrayError
    from lexray.training.distributed import require_single_backward

    require_single_backward(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU), "GradCache")
    with pytest.raises(LexrayError, match="GradCache.*ddp.yaml"):
        require_single_backward(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED), "GradCache")
