"""BiSeNetFormer for ROS 2: model, training, inference backends, evaluation and the ROS node.

The core (everything but :mod:`bisenetformer_ros.ros`) imports no ROS module, so the package also works after a plain
``pip install`` on a training server.

This file is also installed over rosidl's generated ``bisenetformer_ros/__init__.py``: the generated messages
(``bisenetformer_ros.msg``) and the Python modules can live in two directories (an editable checkout and a venv or
colcon install), and extending ``__path__`` lets one import see both.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
