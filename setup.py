"""pip-installable core of bisenetformer_ros (no ROS needed).

On a ROS 2 machine the package is built with colcon through CMakeLists.txt (which also generates the messages in
msg/); this file serves `pip install .` / `pip install -e .` for training servers, CI and the developer venv made by
tools/bootstrap.sh. Exact versions that the project is tested with are pinned in tools/constraints.txt.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _share_files() -> list[tuple[str, list[str]]]:
    """Install config/ and launch/ under <prefix>/share/bisenetformer_ros, the same place colcon puts them."""
    out: list[tuple[str, list[str]]] = []
    for top in ("config", "launch"):
        if not (HERE / top).is_dir():
            continue
        for directory in [*sorted(p for p in (HERE / top).rglob("*") if p.is_dir()), HERE / top]:
            files = sorted(str(f.relative_to(HERE)) for f in directory.iterdir() if f.is_file())
            if files:
                out.append((f"share/bisenetformer_ros/{directory.relative_to(HERE)}", files))
    out.append(("share/ament_index/resource_index/packages", ["resource/bisenetformer_ros"]))
    out.append(("share/bisenetformer_ros", ["package.xml"]))
    return out


setup(
    name="bisenetformer_ros",
    version="0.1.0",
    description="BiSeNetFormer real-time multi-task segmentation: model, training, backends and a ROS 2 node",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["bisenetformer_ros", "bisenetformer_ros.*"]),
    package_data={"bisenetformer_ros": ["models/*.pt", "models/*.json", "assets/*", "model/*.c"]},
    data_files=_share_files(),
    install_requires=[
        "numpy>=1.23,<3",
        "torch>=2.1",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "scipy>=1.10",
        "tqdm>=4.60",
        "psutil>=5.9",
    ],
    extras_require={
        "train": ["tensorboard>=2.14", "matplotlib>=3.7"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxslim>=0.1.30", "onnxscript>=0.1"],
        "tensorrt": ["tensorrt>=10"],
        "ros": ["rosbags>=0.10"],
        "bench": ["transformers>=4.40"],
        "test": ["pytest>=8", "pytest-timeout>=2", "torchmetrics>=1.3", "ruff>=0.5"],
    },
    entry_points={
        "console_scripts": [
            "bisenetformer=bisenetformer_ros.cli.main:main",
            "bisenetformer_node=bisenetformer_ros.ros.node:main",
        ]
    },
    zip_safe=False,
)
