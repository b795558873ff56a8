"""The architectures of the model zoo. Importing this package registers every one of them in
`deepshrink.models.MODELS`; `deepshrink.models.registry` imports it lazily on first lookup."""

from deepshrink.models.zoo import densenet, digits, mobilenet_v2, resnet_cifar, vgg  # noqa: F401  (register)
from deepshrink.models.zoo import ghostnet, mobilenet_v1, shufflenet_v2, squeezenet  # noqa: F401  (register)
from deepshrink.models.zoo.layers import ChannelPadShortcut, ConvBNAct, use_pooled_shortcuts_
from deepshrink.models.zoo.resnet_cifar import BasicBlock, CifarResNet

__all__ = ["BasicBlock", "ChannelPadShortcut", "CifarResNet", "ConvBNAct", "use_pooled_shortcuts_"]
from deepshrink.detection import models as detection_models  # noqa: F401,E402  (registers fcos_resnet, fcos_mobilenet_v2)
