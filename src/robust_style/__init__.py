"""robust-style: fast neural style transfer with adversarially robust perceptual losses.

Train one small feed-forward network per artwork (Johnson et al. 2016), with the
perceptual loss computed by an adversarially robust ResNet-50 (Engstrom et al. 2019;
Nakano 2019), export it to ONNX and serve it over gRPC with ONNX Runtime.

Importing this package imports nothing heavy: the serving path stays free of torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
