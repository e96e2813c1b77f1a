"""BiSeNetFormer for ROS 2: model, training, inference backends, evaluation and the ROS node.

The core (everything but :mod:`bisenetformer_ros.ros`) imports no ROS module, so the package also works after a plain
``pip install`` on a training server.

This file is also installed over rosidl's generated ``bisenetformer_ros/__init__.py``: the generated messages
(``bisenetformer_ros.msg``) and the Python modules can live in two directories (an editable checkout and a venv or
colcon install), and extending ``__path__`` lets one import see both.

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise), set here because
it only takes effect if it is set before torch loads its OpenMP runtime. By default torch's OpenMP workers busy-wait
after every parallel op; on a robot's few cores they then steal the CPU from whatever runs next - ONNX Runtime's own
thread pool (the default CPU backend), the post-processing, rendering, DDS. Measured on 2 cores, BiSeNetFormer-STDC2
at 512x1024: ONNX Runtime 357 ms right after a torch op with spinning workers, 257 ms with passive ones (244 ms
alone); eager PyTorch itself unchanged (457 vs 439-457 ms). A program that imports torch before this package keeps
torch's default; set the variable in its environment instead.
"""

import os
from pkgutil import extend_path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
