"""bench.data.device_decode on the CPU: the GPU decode path's plumbing gives exactly the CPU path's
tensors, sizes and failure reasons (with device='cpu', torchvision's libjpeg-turbo decoder)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.data.device_decode import EncodedImages, collate_encoded, decode_batch, resolve_decode
from bench.data.transforms import EvalImages, InputTransform
from tests.robust_corpus import IMAGE_KINDS, write_image_corpus

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[SimpleNamespace]:
    root = tmp_path_factory.mktemp("device_decode_corpus")
    cases = write_image_corpus(root)
    (root / cases["vanishes_before_decoding"].path).unlink()  # listed, then gone
    return [SimpleNamespace(kind=k, path=root / cases[k].path) for k in IMAGE_KINDS]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_cpu_decode_batch_equals_the_cpu_path_on_the_bad_input_corpus(corpus: list[SimpleNamespace], interpolation: str) -> None:
    transform = InputTransform(224, MEAN, STD, interpolation, antialias=True)
    indices = list(range(len(corpus)))
    reference = EvalImages(corpus, indices, transform)
    encoded = EncodedImages(corpus, indices)
    batch = decode_batch(collate_encoded([encoded[i] for i in indices]), transform, "cpu")
    assert batch["image"].shape == (len(corpus), 3, 224, 224)
    on_device = 0
    for i, case in enumerate(corpus):
        ref = reference[i]
        assert batch["error"][i] == ref["error"], case.kind
        assert int(batch["width"][i]) == ref["width"] and int(batch["height"][i]) == ref["height"], case.kind
        assert torch.equal(batch["image"][i], ref["image"]), case.kind
        assert int(batch["index"][i]) == ref["index"]
        on_device += encoded[i]["data"] is not None
    # the plain JPEGs (control, EXIF-rotated, ...) did take the batched decode_jpeg path
    assert on_device >= 2
    kinds = {c.kind: encoded[i] for i, c in enumerate(corpus)}
    assert kinds["control_rgb_jpeg"]["data"] is not None
    for kind in ("truncated_jpeg", "progressive_jpeg", "cmyk_jpeg", "png_named_jpeg", "trailing_garbage_jpeg"):
        assert kinds[kind]["data"] is None, kind  # CPU-decoded: the CPU policy decides


def test_a_corrupt_jpeg_that_passes_the_header_checks_fails_alone(tmp_path: Path, corpus: list[SimpleNamespace]) -> None:
    good = next(c for c in corpus if c.kind == "control_rgb_jpeg")
    raw = good.path.read_bytes()
    bad = tmp_path / "bad.JPEG"
    sos = raw.index(b"\xff\xda")
    bad.write_bytes(raw[: sos + 20] + b"\xff\x00" * 50 + b"\xff\xd9")  # scan data cut, EOI kept
    transform = InputTransform(64, MEAN, STD)
    images = [good, SimpleNamespace(kind="bad", path=bad), good]
    encoded = EncodedImages(images, [0, 1, 2])
    batch = decode_batch(collate_encoded([encoded[i] for i in range(3)]), transform, "cpu")
    ref = EvalImages(images, [0, 1, 2], transform)
    assert torch.equal(batch["image"][0], ref[0]["image"]) and torch.equal(batch["image"][2], ref[2]["image"])
    if encoded[1]["data"] is not None and batch["error"][1]:  # decoded by the device decoder and refused
        assert batch["error"][1].startswith("corrupt image data")
        assert int(batch["width"][1]) == 0 and not batch["image"][1].any()
    else:  # libjpeg recovers from a corrupt scan with a warning: then both paths decode it alike
        assert torch.equal(batch["image"][1], ref[1]["image"])


def test_resolve_decode() -> None:
    assert resolve_decode("auto", "cpu") == "cpu"
    assert resolve_decode("auto", "cuda:1") == "cuda"
    assert resolve_decode("cpu", "cuda") == "cpu"
    with pytest.raises(ValueError, match="needs --device cuda"):
        resolve_decode("cuda", "cpu")
    with pytest.raises(ValueError, match="decode must be"):
        resolve_decode("nvjpeg", "cuda")


def test_the_one_torchvision_decoder_call_still_has_its_api_and_warns_nobody(tmp_path: Path) -> None:
    """Issue 19 item 16: torchvision 0.29 deprecates its image decoders; `--decode cuda` depends on
    ``torchvision.io.decode_jpeg``, called only in ``decode_jpeg_rgb``. This test fails the day the API
    goes away (then: move that one function to TorchCodec), and checks the call lets no
    DeprecationWarning out while giving libjpeg-turbo's pixels (Pillow's decoder, the same library)."""
    import io
    import warnings

    import numpy as np
    import torch
    from PIL import Image

    import torchvision.io

    from bench.data import device_decode
    from bench.data.device_decode import decode_jpeg_rgb, decoder_available

    assert hasattr(torchvision.io, "decode_jpeg") and hasattr(torchvision.io, "ImageReadMode") and decoder_available()
    rgb = (np.random.default_rng(3).random((21, 34, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one = decode_jpeg_rgb(data)
        both = decode_jpeg_rgb([data, data])
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []
    pil = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert one.shape == (3, 21, 34) and one.dtype == torch.uint8
    np.testing.assert_array_equal(one.permute(1, 2, 0).numpy(), pil)
    assert len(both) == 2 and torch.equal(both[1], one)
    # the module imports no torchvision decoder at import time: only the function does
    source = Path(device_decode.__file__).read_text()
    assert source.count("from torchvision.io import") == 2  # decode_jpeg_rgb and decoder_available
