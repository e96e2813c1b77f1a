"""Cost accounting against the paper's tables, and the ``bisenetformer info`` command."""

from __future__ import annotations

import json

import pytest
import torch

from bisenetformer_ros.cli.main import main
from bisenetformer_ros.model import ModelConfig
from bisenetformer_ros.model.flops import count_macs, model_cost

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("backbone", "num_classes", "h", "w", "paper_g", "tol"),
    [
        ("stdc1", 19, 1024, 2048, 56.0, 0.05),  # Table 1
        ("stdc2", 19, 1024, 2048, 82.0, 0.05),  # Table 1 (Table 3: 83 G)
        ("r50", 19, 1024, 2048, 199.0, 0.05),  # Table 3
        ("stdc1", 150, 512, 512, 8.0, 0.10),  # Table 2
        ("stdc2", 150, 512, 512, 11.0, 0.10),  # Table 2
    ],
)
def test_macs_match_paper(backbone: str, num_classes: int, h: int, w: int, paper_g: float, tol: float) -> None:
    report = model_cost(ModelConfig(backbone=backbone, num_classes=num_classes), h, w)
    g = report.macs_total / 1e9
    assert abs(g / paper_g - 1) <= tol, f"{backbone} at {h}x{w}: {g:.2f} GMACs vs paper {paper_g}"
    # The breakdown adds up: top-level modules + ops run directly in the root = total.
    top = sum(v for k, v in report.macs_by_module.items() if "." not in k or k == "(own ops)")
    assert top == report.macs_total
    assert sum(report.macs_by_op.values()) == report.macs_total


def test_mac_counter_counts_convolutions_and_matmuls_exactly() -> None:
    """A hand-countable model: conv 3->8 3x3 on 10x10 and a linear 100x8 -> 4 plus one batched matmul."""

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).flatten(2).transpose(1, 2)  # [1, 100, 8]
            z = self.fc(y)  # [1, 100, 4]
            return z @ z.transpose(1, 2)  # [1, 100, 100], 4 MACs per output

    total, by_module, _ = count_macs(Toy(), torch.zeros(1, 3, 10, 10))
    conv = 8 * 3 * 9 * 100
    fc = 100 * 8 * 4
    mm = 100 * 100 * 4
    assert by_module["conv"] == conv and by_module["fc"] == fc
    assert total == conv + fc + mm and by_module["(own ops)"] == mm


@pytest.mark.slow
def test_more_queries_cost_more_as_in_table7() -> None:
    cost = {n: model_cost(ModelConfig(backbone="stdc2", num_queries=n), 1024, 2048).macs_total / 1e9 for n in (50, 200)}
    assert cost[50] == pytest.approx(80.0, rel=0.05) and cost[200] == pytest.approx(88.0, rel=0.05)


def test_info_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["info", "--backbone", "stdc1", "--num-classes", "19", "--height", "1024", "--width", "2048", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params_total"] == pytest.approx(13.1e6, rel=0.02)
    assert data["macs_total"] == pytest.approx(56e9, rel=0.05)
    assert data["paper"] == {"params_M": 13.1, "GMACs": 56.0}
    assert {"backbone", "context_path", "ffm", "decoder", "decoder.cross_blocks"} <= set(data["macs_by_module"])


def test_info_cli_table_and_rounding(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--backbone", "stdc2", "--num-classes", "150", "--height", "500", "--width", "500"]) == 0
    out = capsys.readouterr().out
    assert "input 512x512" in out and "parameters: 17.16 M (17,164,471)" in out and "paper 17.2 M" in out
    assert "decoder.(own ops)" in out  # the query-mask products are shown, not lost
    assert main(["info", "--height", "0"]) == 2
