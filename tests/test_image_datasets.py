"""GTSRB, Flower-17, folder and npz loaders on fixtures in their real on-disk layouts; equalisation, augmentation,
the cache, and every data error as one clear line."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
from image_fixtures import make_flower17, make_gtsrb_official, make_gtsrb_pickles, make_image_folder, make_npz
from omegaconf import OmegaConf
from PIL import Image

from attrobust.config import config_dir
from attrobust.data import DATASETS
from attrobust.data import images as images_module
from attrobust.data.augment import balance_classes, distort, distort_chunked, draw_parameters
from attrobust.data.base import ImageSet
from attrobust.data.equalize import equalize_histograms
from attrobust.data.flower17 import reference_split
from attrobust.data.images import decode_images
from attrobust.errors import AttrobustError


def spec(name: str, **overrides):
    """The shipped conf/dataset/<name>.yaml with `overrides` (root, path, num_classes, ...)."""
    plain = OmegaConf.to_container(OmegaConf.load(config_dir() / "dataset" / f"{name}.yaml"))
    del plain["defaults"]
    if "workers" in plain:
        plain["workers"] = 1  # decode in-process (one test covers the worker processes)
    return DATASETS.build({**plain, **overrides})


# --- GTSRB -----------------------------------------------------------------------------------------------------

def test_gtsrb_official_layout(tmp_path):
    make_gtsrb_official(tmp_path, classes=3, per_class=4, test=6)
    splits = spec("gtsrb", root=str(tmp_path), num_classes=3).load()
    assert splits.train.images.shape == (12, 3, 32, 32) and splits.test.images.shape == (6, 3, 32, 32)
    assert splits.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert splits.test.labels.tolist() == [0, 1, 2, 0, 1, 2]  # from GT-final_test.csv, in file order
    first = Image.open(tmp_path / "gtsrb/GTSRB/Training/00000/00000_00000.ppm").resize((32, 32), Image.LANCZOS)
    assert torch.equal(splits.train.images[0], torch.from_numpy(np.array(first)).permute(2, 0, 1))


def test_gtsrb_pickle_layout_and_reference_preprocessing(tmp_path):
    content = make_gtsrb_pickles(tmp_path, classes=3, train=12, test=6)
    plain = spec("gtsrb", root=str(tmp_path), num_classes=3).load()
    assert torch.equal(plain.train.images, torch.from_numpy(content["train"]["features"]).permute(0, 3, 1, 2))
    assert plain.train.labels.dtype == torch.int64 and len(plain.test) == 6
    processed = spec("gtsrb", root=str(tmp_path), num_classes=3, equalize=True, balance_per_class=7).load()
    assert torch.bincount(processed.train.labels).tolist() == [7, 7, 7]
    originals = plain.train.images[plain.train.labels == 0]
    assert torch.equal(processed.train.images[:4], equalize_histograms(originals))  # originals first, then copies
    assert torch.equal(processed.test.images, equalize_histograms(plain.test.images))


def test_gtsrb_layout_errors(tmp_path):
    with pytest.raises(AttrobustError, match="gtsrb not found: expected .*dataset.download=true"):
        spec("gtsrb", root=str(tmp_path)).load()
    make_gtsrb_official(tmp_path, classes=3)
    with pytest.raises(AttrobustError, match="wrong number of classes: .* has 3 class folders but .*=43"):
        spec("gtsrb", root=str(tmp_path)).load()
    (tmp_path / "gtsrb/GT-final_test.csv").unlink()
    with pytest.raises(AttrobustError, match="gtsrb test set not found"):
        spec("gtsrb", root=str(tmp_path), num_classes=3).load()


def test_gtsrb_preset_layout_prefers_the_reference_pickles_and_names_them_when_missing(cli, tmp_path):
    """The rar_gtsrb_* presets read the pickles even beside the official archives, and say which files they want."""
    make_gtsrb_official(tmp_path / "data", classes=3)
    result = cli("train", "+experiment=rar_gtsrb_natural", "dataset.num_classes=3", "train.steps=1", "hydra.run.dir=r")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert "dataset.layout=pickle" in line and "train.p and test.p not found" in line
    assert "traffic-signs-data.zip" in line and "dataset.layout=torchvision" in line
    make_gtsrb_pickles(tmp_path / "pickles", classes=3, train=12, test=6)
    (tmp_path / "pickles/gtsrb/test.p").unlink()
    with pytest.raises(AttrobustError, match=r"pickle layout .*: test.p not found in"):
        spec("gtsrb", root=str(tmp_path / "pickles"), num_classes=3, layout="pickle").load()


class _Payload:
    """Unpickling this calls os.system: the marker file appears if the loader runs code from a data file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_gtsrb_pickle_that_would_run_code_is_refused_unread(tmp_path, protocol):
    import pickle

    make_gtsrb_pickles(tmp_path, classes=3)
    marker = tmp_path / "marker"
    with open(tmp_path / "gtsrb/train.p", "wb") as handle:
        pickle.dump({"features": _Payload(marker), "labels": np.zeros(3)}, handle, protocol=protocol)
    with pytest.raises(AttrobustError, match=r"refused gtsrb pickle .*train.p: it names (posix|os)\.system"):
        spec("gtsrb", root=str(tmp_path), num_classes=3).load()
    assert not marker.exists()


def test_gtsrb_pickles_of_numpy_1_and_2_load(tmp_path):
    """numpy 1 names numpy.core.multiarray._reconstruct, numpy 2 numpy._core...: both are admitted."""
    import pickle

    content = make_gtsrb_pickles(tmp_path, classes=3)
    for name in ("train", "test"):
        data = pickle.dumps(content[name], protocol=2)  # GLOBAL opcodes: module names as plain text
        (tmp_path / f"gtsrb/{name}.p").write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    assert b"numpy.core.multiarray" in (tmp_path / "gtsrb/train.p").read_bytes()
    splits = spec("gtsrb", root=str(tmp_path), num_classes=3, cache=False).load()
    assert torch.equal(splits.train.images, torch.from_numpy(content["train"]["features"]).permute(0, 3, 1, 2))


def test_gtsrb_corrupt_image_names_the_file(tmp_path):
    make_gtsrb_official(tmp_path, classes=2)
    bad = tmp_path / "gtsrb/GTSRB/Training/00001/00000_00001.ppm"
    bad.write_bytes(b"P6 not really a ppm")
    with pytest.raises(AttrobustError, match=f"corrupt or unreadable image {bad}"):
        spec("gtsrb", root=str(tmp_path), num_classes=2).load()


def test_gtsrb_bad_pickle_is_one_clear_error(tmp_path):
    make_gtsrb_pickles(tmp_path)
    (tmp_path / "gtsrb/test.p").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(AttrobustError, match="corrupt gtsrb pickle .*test.p"):
        spec("gtsrb", root=str(tmp_path), num_classes=3).load()


# --- cache -----------------------------------------------------------------------------------------------------

def test_cache_is_reused_and_invalidated_by_a_changed_source(tmp_path, monkeypatch):
    make_gtsrb_official(tmp_path, classes=2)
    dataset = spec("gtsrb", root=str(tmp_path), num_classes=2)
    first = dataset.load()
    entries = list((tmp_path / "gtsrb/.attrobust_cache").glob("gtsrb-*.pt"))
    assert len(entries) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache matches")

    with monkeypatch.context() as patch:
        patch.setattr(images_module, "decode_images", no_decoding)
        again = dataset.load()
    assert torch.equal(again.train.images, first.train.images) and torch.equal(again.test.labels, first.test.labels)

    changed = tmp_path / "gtsrb/GTSRB/Training/00000/00000_00000.ppm"
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))
    rebuilt = dataset.load()
    assert rebuilt.train.images[0].sum() == 0 and not torch.equal(rebuilt.train.images, first.train.images)
    assert len(list((tmp_path / "gtsrb/.attrobust_cache").glob("gtsrb-*.pt"))) == 2
    other_recipe = spec("gtsrb", root=str(tmp_path), num_classes=2, equalize=True).load()
    assert not torch.equal(other_recipe.train.images, rebuilt.train.images)


def test_corrupt_cache_entry_is_rebuilt_and_unwritable_root_only_warns(tmp_path, monkeypatch, caplog):
    make_gtsrb_pickles(tmp_path)
    dataset = spec("gtsrb", root=str(tmp_path), num_classes=3)
    reference = dataset.load()
    (entry,) = (tmp_path / "gtsrb/.attrobust_cache").glob("*.pt")
    entry.write_bytes(b"garbage")
    assert torch.equal(dataset.load().train.images, reference.train.images)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("attrobust.data.cache.save_torch_atomic", refuse)
    uncached = spec("gtsrb", root=str(tmp_path), num_classes=3, equalize=True).load()
    assert len(uncached.train) == 12 and "could not write the cache" in caplog.text


# --- equalisation and augmentation -----------------------------------------------------------------------------

def test_histogram_equalisation_of_a_known_image():
    # one channel with values 10, 10, 20, 30: cdf - cdf(10) = 0, 1, 2 of 4 - 2 pixels, x 255/2 -> 0, 127.5, 255;
    # OpenCV rounds half to even: 128. A constant channel keeps its value (OpenCV fills it with that value).
    image = torch.tensor([[[10, 10], [20, 30]], [[7, 7], [7, 7]], [[0, 255], [255, 255]]], dtype=torch.uint8)
    out = equalize_histograms(image.unsqueeze(0))[0]
    assert out[0].tolist() == [[0, 0], [128, 255]]
    assert out[1].tolist() == [[7, 7], [7, 7]]
    assert out[2].tolist() == [[0, 255], [255, 255]]


def test_equalisation_is_per_image_and_channel():
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 120, size=(5, 3, 9, 11), dtype=np.uint8))
    together = equalize_histograms(batch)
    one_by_one = torch.cat([equalize_histograms(batch[i:i + 1, c:c + 1]) for i in range(5) for c in range(3)])
    assert torch.equal(together.view(15, 1, 9, 11), one_by_one)
    assert int(together.amax(dim=(2, 3)).min()) == 255  # every channel stretched to the full range


def test_zero_distortion_is_the_identity():
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    zero = torch.zeros(3, dtype=torch.float64)
    out = distort(images, zero, torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 4, 2, dtype=torch.float64))
    assert (out.int() - images.int()).abs().max() <= 1  # x/255*255 truncated, as the reference's astype(uint8)


def test_a_whole_pixel_translation_shifts_and_fills_with_zeros():
    images = torch.randint(1, 256, (1, 1, 8, 8), dtype=torch.uint8)
    zero = torch.zeros(1, dtype=torch.float64)
    out = distort(images, zero, torch.tensor([[2.0, 0.0]], dtype=torch.float64), torch.zeros(1, 4, 2,
                                                                                             dtype=torch.float64))
    assert (out[..., :2] == 0).all()
    assert (out[..., 2:].int() - images[..., :-2].int()).abs().max() <= 1


def test_augmentation_is_seeded_and_independent_of_chunking(monkeypatch):
    images = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    sources = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2])
    whole = distort_chunked(images, sources, torch.Generator().manual_seed(3))
    monkeypatch.setattr("attrobust.data.augment.PIXELS_PER_CHUNK", 2 * 3 * 12 * 12)
    chunked = distort_chunked(images, sources, torch.Generator().manual_seed(3))
    assert torch.equal(whole, chunked)
    angles, shifts, corners = draw_parameters(1000, 32, torch.Generator().manual_seed(0))
    assert angles.abs().max() <= 15 and shifts.abs().max() <= 2.5 and corners.abs().max() <= 32 * 0.3 * 0.8


def test_balance_classes_keeps_originals_first_and_fills_each_class():
    data = ImageSet(torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8), torch.tensor([0, 1, 1, 0, 2, 1, 1]))
    out = balance_classes(data, per_class=3, num_classes=3, seed=0)
    assert out.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]  # class 1 already has 4: kept, not cut
    assert torch.equal(out.images[:2], data.images[[0, 3]])
    assert torch.equal(balance_classes(data, 3, 3, seed=0).images, out.images)
    assert not torch.equal(balance_classes(data, 3, 3, seed=1).images, out.images)


# --- Flower-17 -------------------------------------------------------------------------------------------------

def test_flower17_reference_split_rule():
    train, test = reference_split(17, 4557077, 72)
    assert len(train) == 1224 and len(test) == 136
    assert torch.bincount(test // 80).tolist() == [8] * 17
    assert len(set(train.tolist()) | set(test.tolist())) == 1360
    # the rule: list class folders as strings ("0", "1", "10", ...), permute with numpy's legacy generator seeded
    # 4557077, then the first 72 met of each class train
    listing = np.concatenate([np.arange(c * 80, c * 80 + 80) for c in sorted(range(17), key=str)])
    shuffled = listing[np.random.RandomState(4557077).permutation(1360)]
    first_test = next(i for i in shuffled if (shuffled[:list(shuffled).index(i)] // 80 == i // 80).sum() == 72)
    assert test[0] == first_test and train[0] == shuffled[0]


def test_flower17_folder_and_archive(tmp_path):
    make_flower17(tmp_path / "a", classes=2)
    splits = spec("flower17", root=str(tmp_path / "a"), num_classes=2, size=16).load()
    assert splits.train.images.shape == (144, 3, 16, 16) and len(splits.test) == 16
    assert torch.bincount(splits.test.labels).tolist() == [8, 8]
    train_index, _ = reference_split(2, 4557077, 72)
    assert torch.equal(splits.train.labels, train_index // 80)
    make_flower17(tmp_path / "b", classes=2, archive=True)
    unpacked = spec("flower17", root=str(tmp_path / "b"), num_classes=2, size=16).load()
    assert torch.equal(unpacked.train.images, splits.train.images)
    assert (tmp_path / "b/17flowers/jpg/image_0160.jpg").is_file()
    balanced = spec("flower17", root=str(tmp_path / "a"), num_classes=2, size=16, balance_per_class=80).load()
    assert torch.bincount(balanced.train.labels).tolist() == [80, 80]


def test_flower17_errors(tmp_path):
    with pytest.raises(AttrobustError, match="flower17 not found: .*dataset=flower17 dataset.download=true"):
        spec("flower17", root=str(tmp_path)).load()
    folder = make_flower17(tmp_path, classes=2)
    (folder / "image_0042.jpg").unlink()
    with pytest.raises(AttrobustError, match="wrong flower17 layout: 1 of 160 images missing .*image_0042.jpg"):
        spec("flower17", root=str(tmp_path), num_classes=2).load()
    (folder / "image_0042.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    with pytest.raises(AttrobustError, match="corrupt or unreadable image .*image_0042.jpg"):
        spec("flower17", root=str(tmp_path), num_classes=2).load()
    bad = tmp_path / "c/17flowers"
    bad.mkdir(parents=True)
    with tarfile.open(bad / "17flowers.tgz", "w:gz") as tar:
        tar.add(tmp_path / "17flowers/jpg/files.txt", arcname="readme.txt")
    with pytest.raises(AttrobustError, match="has no jpg/ folder"):
        spec("flower17", root=str(tmp_path / "c"), num_classes=2).load()
    (bad / "17flowers.tgz").write_bytes(b"not gzip")
    with pytest.raises(AttrobustError, match="corrupt flower17 archive"):
        spec("flower17", root=str(tmp_path / "c"), num_classes=2).load()
    assert not (bad / "jpg").exists() and not (bad / ".jpg.partial").exists()


def _crafted_archive(path, member: tarfile.TarInfo, data: bytes = b"payload") -> None:
    """A flower17 archive holding one genuine jpg/ file and `member` (a path or link that must not be written)."""
    import io

    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("jpg/image_0001.jpg")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"jpg"))
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member,reason", [
    (_member("jpg/../../escaped.txt"), "not a relative path inside it"),
    (_member("jpg/sub/../../../escaped.txt"), "not a relative path inside it"),
    (_member("jpg/link.jpg", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_member("jpg/hard.jpg", tarfile.LNKTYPE, "jpg/image_0001.jpg"), "is a link"),
    (_member("jpg/fifo", tarfile.FIFOTYPE), "is a special file"),
])
def test_flower17_archive_with_an_unsafe_member_is_rejected_and_writes_nothing(tmp_path, member, reason):
    """The safe extraction works without tarfile's `filter` (Python < 3.11.4): nothing escapes, no link is made."""
    base = tmp_path / "root" / "17flowers"
    base.mkdir(parents=True)
    _crafted_archive(base / "17flowers.tgz", member)
    with pytest.raises(AttrobustError, match=f"unsafe archive .*17flowers.tgz: member .* {reason}"):
        spec("flower17", root=str(tmp_path / "root"), num_classes=2).load()
    assert sorted(p.name for p in base.iterdir()) == ["17flowers.tgz"]  # no jpg/, no partial folder
    assert not list(tmp_path.rglob("escaped.txt"))


# --- your own data ---------------------------------------------------------------------------------------------

def test_image_folder(tmp_path):
    make_image_folder(tmp_path, classes=("cat", "dog", "emu"))
    splits = spec("folder", path=str(tmp_path), size=[12, 10]).load()
    assert splits.num_classes == 3 and splits.train.images.shape == (12, 3, 12, 10)
    assert splits.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    grey = spec("folder", path=str(tmp_path), channels=1, cache=False).load()
    assert grey.train.images.shape[1] == 1


def test_image_folder_errors(tmp_path):
    make_image_folder(tmp_path, classes=("cat", "dog"))
    with pytest.raises(AttrobustError, match="wrong number of classes: .* has 2 class folders but .*num_classes=5"):
        spec("folder", path=str(tmp_path), num_classes=5).load()
    (tmp_path / "test/yak").mkdir()
    with pytest.raises(AttrobustError, match="class folder\\(s\\) yak that train/ does not have"):
        spec("folder", path=str(tmp_path)).load()
    (tmp_path / "test/yak").rmdir()
    for file in (tmp_path / "test").glob("*/*"):
        file.unlink()
    with pytest.raises(AttrobustError, match="the test split is empty"):
        spec("folder", path=str(tmp_path)).load()


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "float"])
def test_npz_layouts(tmp_path, layout):
    make_npz(tmp_path, layout)
    splits = spec("npz", path=str(tmp_path)).load()
    assert splits.train.images.shape == (12, 3, 16, 16) and splits.num_classes == 3
    reference = spec("npz", path=str(make_npz(tmp_path / "ref", "nhwc"))).load()
    assert torch.equal(splits.train.images, reference.train.images)


def test_npz_errors(tmp_path):
    with pytest.raises(AttrobustError, match="npz dataset not found: expected .*train.npz"):
        spec("npz", path=str(tmp_path)).load()
    np.savez(tmp_path / "train.npz", images=np.zeros((2, 8, 8), np.uint8), labels=np.zeros(2))
    np.savez(tmp_path / "test.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(AttrobustError, match="needs arrays 'x' and 'y', has images, labels"):
        spec("npz", path=str(tmp_path)).load()
    np.savez(tmp_path / "train.npz", x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(AttrobustError, match="the train split is empty"):
        spec("npz", path=str(tmp_path)).load()


def test_decoding_with_worker_processes_equals_in_process(tmp_path):
    paths = []
    rng = np.random.default_rng(0)
    for index in range(300):
        path = tmp_path / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    assert torch.equal(decode_images(paths, (4, 4), workers=2), decode_images(paths, (4, 4), workers=1))


# --- end to end through the CLI --------------------------------------------------------------------------------

FEW_STEPS = ["train.epochs=1", "train.batch_size=4", "eval.num_examples=4", "dataset.pgd.steps=1",
             "hydra.run.dir=run"]


@pytest.mark.parametrize("dataset,make,extra", [
    ("gtsrb", make_gtsrb_official, ["dataset.root=data", "dataset.num_classes=3", "reg=ig_norm", "reg.ig_steps=2",
                                    "reg.approx_factor=1", "reg.steps=1", "dataset.equalize=true"]),
    ("gtsrb", make_gtsrb_pickles, ["dataset.root=data", "dataset.num_classes=3", "dataset.balance_per_class=6"]),
    ("flower17", make_flower17, ["dataset.root=data", "dataset.num_classes=2", "dataset.size=32",
                                 "train.num_examples=8"]),
    ("folder", make_image_folder, ["dataset.path=data"]),
    ("npz", make_npz, ["dataset.path=data", "model=small_cnn"]),
])
def test_train_runs_end_to_end_on_each_dataset(cli, tmp_path, dataset, make, extra):
    make(tmp_path / "data")
    result = cli("train", f"dataset={dataset}", *FEW_STEPS, *extra)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run/model.pt").is_file() and (tmp_path / "run/table.md").is_file()
    log = (tmp_path / "run/train_log.csv").read_text()
    assert "acc" in log


def test_missing_dataset_through_the_cli_is_one_line_and_writes_nothing(cli, tmp_path):
    result = cli("train", "dataset=gtsrb", "dataset.root=nowhere", *FEW_STEPS)
    assert result.exit_code == 2 and len(result.error_lines) == 1
    assert "nowhere/gtsrb" in result.error_lines[0] and "dataset.download=true" in result.error_lines[0]
    assert not (tmp_path / "run/model.pt").exists() and not (tmp_path / "run/last.pt").exists()


def test_evaluate_attacks_attributions_of_the_reference_resnet(cli, tmp_path):
    make_gtsrb_pickles(tmp_path / "data", train=24, test=12)
    assert cli("train", "dataset=gtsrb", "dataset.root=data", "dataset.num_classes=3", *FEW_STEPS,
               "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "eval.num_examples=6", "attack.steps=1", "attribution_attack.steps=2",
                 "explainer.steps=4", "attribution_attack.k=20", "attribution_attack.eval_k=20",
                 "attribution_attack.restarts=1", "hydra.run.dir=eval")
    assert result.exit_code == 0, result.stderr
    measures = (tmp_path / "eval/measures.csv").read_text().splitlines()
    assert "kendall" in measures[0].split(",") and len(measures) > 1


def test_a_checkpoint_never_chooses_which_files_are_read(cli, tmp_path):
    """A shared model.pt whose dataset config points at a crafted pickle: evaluation reads this run's data root."""
    import pickle

    make_gtsrb_pickles(tmp_path / "data", train=24, test=12)
    assert cli("train", "dataset=gtsrb", "dataset.num_classes=3", *FEW_STEPS, "eval_at_end=false").exit_code == 0
    attacker = tmp_path / "attacker" / "gtsrb"
    attacker.mkdir(parents=True)
    marker = tmp_path / "marker"
    for name in ("train.p", "test.p"):
        with open(attacker / name, "wb") as handle:
            pickle.dump({"features": _Payload(marker), "labels": np.zeros(3)}, handle)
    payload = torch.load(tmp_path / "run/model.pt", weights_only=True)
    payload["dataset_cfg"] = {**payload["dataset_cfg"], "root": str(tmp_path / "attacker"), "layout": "pickle"}
    torch.save(payload, tmp_path / "crafted.pt")
    result = cli("evaluate", "checkpoint=crafted.pt", "attributions=false", "eval.num_examples=4", "attack.steps=1",
                 "hydra.run.dir=eval")
    assert result.exit_code == 0, result.stderr
    assert not marker.exists()


def test_a_model_of_your_own_folder_data_is_evaluated_on_the_folder_you_name(cli, tmp_path):
    make_image_folder(tmp_path / "data")
    assert cli("train", "dataset=folder", "dataset.path=data", *FEW_STEPS, "eval_at_end=false").exit_code == 0
    result = cli("evaluate", "checkpoint=run", "attributions=false", "hydra.run.dir=eval")
    assert result.exit_code == 2
    (line,) = result.error_lines
    assert "trained on your own 'folder' data; pass its folder with dataset_path=DIR" in line
    result = cli("evaluate", "checkpoint=run", "attributions=false", "dataset_path=data", "eval.num_examples=4",
                 "attack.steps=1", "hydra.run.dir=eval2")
    assert result.exit_code == 0, result.stderr
    assert set(pd.read_csv(tmp_path / "eval2" / "results.csv")["dataset"]) == {"folder:data"}  # as training names it


def test_input_data_is_checked_once_at_load(tmp_path, caplog):
    """Non-finite pixels, a single class and an empty class folder are refused; a class left empty on purpose
    (num_classes beyond the labels) is named in a warning."""
    make_npz(tmp_path / "nan", layout="float")
    with np.load(tmp_path / "nan/train.npz") as arrays:
        x, y = arrays["x"].copy(), arrays["y"]
    x[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan/train.npz", x=x, y=y)
    with pytest.raises(AttrobustError, match="train.npz has 1 non-finite pixel values"):
        spec("npz", path=str(tmp_path / "nan"), num_classes=None).load()
    make_npz(tmp_path / "one", classes=1)
    with pytest.raises(AttrobustError, match="has 1 class\\(es\\); a classifier needs at least 2"):
        spec("npz", path=str(tmp_path / "one"), num_classes=None).load()
    with caplog.at_level("WARNING", logger="attrobust"):
        spec("npz", path=str(tmp_path / "one"), num_classes=3).load()
    assert "class(es) 1, 2 have no training images" in caplog.text
    make_image_folder(tmp_path / "folder", classes=("cat", "dog", "emu"))
    for image in (tmp_path / "folder/train/dog").iterdir():
        image.unlink()
    with pytest.raises(AttrobustError, match="class folder\\(s\\) dog in .*train hold no images"):
        spec("folder", path=str(tmp_path / "folder"), num_classes=None).load()
