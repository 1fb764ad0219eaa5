"""The student: layer cutting (BERT and Qwen2), mean pooling, freezing per stage, save/load."""

from __future__ import annotations

import pytest
import torch

from jasper.config import StageConfig, StudentConfig
from jasper.errors import JasperError
from jasper.models.backbone import layer_list
from jasper.models.student import build_student, load_student, mean_pool, save_student
from jasper.train.stages import apply_stage


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_qwen2"])
def test_keep_layers_and_heads(family, request, tmp_path):
    model_dir = request.getfixturevalue(family)
    student = build_student(StudentConfig(model=str(model_dir), keep_layers=[0, 2], heads=[12, 6], max_length=16))
    _, layers = layer_list(student.backbone)
    assert len(layers) == 2 and student.backbone.config.num_hidden_layers == 2
    out = student(["the cat saw a dog", "music"], [12, 6])
    assert out[12].shape == (2, 12) and out[6].shape == (2, 6)
    save_student(student, tmp_path / "s")
    again = load_student(tmp_path / "s")
    texts = ["a red bird", "the old king wrote a book"]
    torch.testing.assert_close(
        torch.from_numpy(again.encode(texts, [12, 6])[6]), torch.from_numpy(student.encode(texts, [12, 6])[6])
    )


def test_padding_does_not_change_vectors(tiny_bert):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[8]))
    alone = student.encode(["a cat"], [8])[8]
    padded = student.encode(["a cat", "the old king wrote a long book about the war and peace"], [8])[8][:1]
    torch.testing.assert_close(torch.from_numpy(alone), torch.from_numpy(padded), atol=1e-5, rtol=1e-4)


def test_keep_layers_out_of_range(tiny_bert):
    with pytest.raises(JasperError, match="keep_layers"):
        build_student(StudentConfig(model=str(tiny_bert), keep_layers=[0, 7], heads=[8]))


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_qwen2"])
def test_stage_freezing(family, request):
    student = build_student(StudentConfig(model=str(request.getfixturevalue(family)), heads=[12, 6]))
    stage = StageConfig(name="s", train="heads", lr=1e-3, steps=1)
    params = apply_stage(student, stage)
    assert {id(p) for p in params} == {id(p) for p in student.heads["12"].parameters()}
    stage = StageConfig(name="s", train="last_layers", last_layers=1, lr=1e-3, steps=1)
    apply_stage(student, stage)
    _, layers = layer_list(student.backbone)
    assert all(p.requires_grad for p in layers[-1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert not student.backbone.get_input_embeddings().weight.requires_grad
    assert not any(p.requires_grad for p in student.heads["6"].parameters())
    stage = StageConfig(name="s", train="all", heads="all", lr=1e-3, steps=1)
    params = apply_stage(student, stage)
    assert len(params) == len(list(student.parameters()))


def test_stage_more_layers_than_model(tiny_bert):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[8]))
    with pytest.raises(JasperError, match="last 9 layers, the student has 4"):
        apply_stage(student, StageConfig(name="s", train="last_layers", last_layers=9, lr=1e-3, steps=1))


def test_prefix_heads_share_fc1(tiny_bert):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], head_mode="prefix"))
    assert list(student.heads) == ["12"]
    out = student(["a cat"], [12, 6])
    torch.testing.assert_close(out[6], out[12][:, :6])


def test_length_groups_give_the_same_vectors_and_gradients(tiny_bert):
    from jasper.config import StudentConfig
    from jasper.models.student import build_student

    import helpers

    texts = [" ".join(helpers.WORDS[: 2 + (i * 7) % 30]) for i in range(24)]  # lengths from 2 to 31 words
    results = []
    for groups in (1, 3):
        torch.manual_seed(0)
        student = build_student(StudentConfig(model=str(tiny_bert), heads=[8, 4], max_length=32, length_groups=groups))
        student.eval()  # no dropout: the two paths must agree to rounding
        heads = student(texts, [8, 4])
        loss = heads[8].square().sum() + heads[4].sum()
        loss.backward()
        grads = [p.grad.clone() for p in student.parameters() if p.grad is not None]
        results.append((heads, grads))
    (plain, plain_grads), (grouped, grouped_grads) = results
    for dim in (8, 4):
        torch.testing.assert_close(grouped[dim], plain[dim], rtol=1e-5, atol=1e-6)
    for got, want in zip(grouped_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
