"""Architectures: pinned parameter counts, forward/backward on CPU, embeddings, weights files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lenscal.models import MODELS, ModelError, create_model, parameter_count

#: The team's published sizes (docs/science.md): the registry must keep stating them. A new
#: architecture needs no entry here: its own declared size is checked below.
COUNTS = {"efficientnet_v2_s": 20_178_769, "bottlenecked_resnet": 195_589, "resnet18": 11_177_025}


def test_every_registered_architecture_states_its_published_size() -> None:
    for name, arch in MODELS.items():
        assert arch.parameters == COUNTS.get(name, arch.parameters), name
    assert set(COUNTS) <= set(MODELS)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_parameter_count_forward_backward_and_embedding(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch)
    assert parameter_count(model) == MODELS[arch].parameters
    x = torch.randn(2, 3, 101, 101)
    model.eval()  # the head's dropout is random in training mode
    logits, embedding = model.forward_with_embedding(x)
    assert logits.shape == (2,) and embedding.shape == (2, MODELS[arch].embedding_dim)
    torch.testing.assert_close(model.head(embedding).squeeze(-1), logits)
    torch.testing.assert_close(model(x), logits)
    model.train()
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_efficientnet_head_is_dropout_then_linear_1280() -> None:
    head = create_model("efficientnet_v2_s").head
    assert isinstance(head[0], torch.nn.Dropout) and head[0].p == 0.2
    assert isinstance(head[1], torch.nn.Linear) and (head[1].in_features, head[1].out_features) == (1280, 1)


def test_unknown_arch_and_bad_arguments() -> None:
    with pytest.raises(ModelError, match="unknown architecture 'vit'"):
        create_model("vit")
    with pytest.raises(ModelError, match="bad arguments for resnet18"):
        create_model("resnet18", base_ch=8)


def test_pretrained_weights_come_from_disk_or_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LENSCAL_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=r"ImageNet weights for resnet18 not found: lenscal never downloads"):
        create_model("resnet18", pretrained=True)
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    save_file(reference.state_dict(), str(tmp_path / "resnet18.safetensors"))
    model = create_model("resnet18", pretrained=True)
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    with pytest.raises(ModelError, match="no ImageNet weights"):
        create_model("bottlenecked_resnet", pretrained=True)
