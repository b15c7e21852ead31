import pytest
import torch
from torch import nn

from evolution import checkpoints
from evolution.train import GenomeModule


def test_check_fits_names_the_first_difference():
    ckpt = {"state_dict": nn.Linear(2, 4).state_dict()}
    with pytest.raises(ValueError, match=r"^checkpoint c.ckpt does not fit Linear: weight has shape \(4, 2\), "
                                         r"this model \(3, 2\) \(trained with another config\?\)$"):
        checkpoints.check_fits(nn.Linear(2, 3), ckpt, "c.ckpt")
    with pytest.raises(ValueError, match=r"does not fit Sequential: 2 weights missing \(e.g. 0.bias\), "
                                         r"2 unexpected \(e.g. bias\)"):
        checkpoints.check_fits(nn.Sequential(nn.Linear(2, 4)), ckpt, "c.ckpt")
    checkpoints.check_fits(nn.Linear(2, 4), ckpt, "c.ckpt")  # a fitting checkpoint passes


def test_files_that_are_not_checkpoints_are_one_line(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain.pt is not a Lightning checkpoint \(it has no state_dict\)$"):
        checkpoints.read_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="text.ckpt cannot be read"):
        GenomeModule.from_checkpoint(tmp_path / "text.ckpt")
    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.ckpt does not exist"):
        GenomeModule.from_checkpoint(tmp_path / "nope.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "nogenome.ckpt")
    with pytest.raises(ValueError, match="holds no genome"):
        GenomeModule.from_checkpoint(tmp_path / "nogenome.ckpt")
