"""TorchServe handler for an artforge stylizer: JPEG in, JPEG out, as `artforge serve`'s image API does.

Runs inside TorchServe's worker (the peers venv, never artforge's), packed
into a model archive by bench_peers.py with torch-model-archiver:

- eager (TorchServe's recommended path for a PyTorch model): the serialized
  file is an artforge training checkpoint (zoo/checkpoints/NAME.pt) and the
  extra file artforge/models/style_net.py builds its network; the forward
  pass is artforge's StylizerWrapper (float NCHW in [0, 255], round, clamp),
  fp32, under torch.inference_mode;
- ONNX: the serialized file is the repository's model.onnx (uint8 NHWC in
  and out) and BaseHandler's own ONNX path opens the ONNX Runtime session.

The request body is the encoded image (raw, or the multipart "data" field
perf_analyzer's torchserve mode sends); the answer is a JPEG at QUALITY with
an `x-precision` header naming what ran, so a client can ask the server.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler

QUALITY = int(os.environ.get("ARTFORGE_PEERS_QUALITY", "90"))


class StylizerHandler(BaseHandler):
    def initialize(self, context) -> None:
        serialized = context.manifest["model"]["serializedFile"]
        if serialized.endswith(".onnx"):
            super().initialize(context)  # TorchServe's ONNX path: an ONNX Runtime session
            import onnxruntime as ort

            threads = self.model.get_session_options().intra_op_num_threads
            self.precision = (f"onnxruntime {ort.__version__} {self.model.get_providers()[0]}, fp32 graph, "
                              f"{threads} intra-op threads")
            self.onnx = True
            return
        from style_net import TransformerNet  # an extra file of the archive (artforge/models/style_net.py)

        # artforge's own checkpoint (its provenance holds a TorchVersion, which weights_only refuses)
        checkpoint = torch.load(os.path.join(context.system_properties["model_dir"], serialized),
                                map_location="cpu", weights_only=False)
        arch = {k: v for k, v in checkpoint["arch"].items() if k != "name"}
        self.model = TransformerNet(**arch)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.eval()
        dtype = str(next(self.model.parameters()).dtype).replace("torch.float32", "fp32")
        self.precision = f"torch {torch.__version__} eager, {dtype}, {torch.get_num_threads()} threads"
        self.onnx = False
        self.initialized = True

    def preprocess(self, data: list[dict]) -> np.ndarray:
        images = []
        for row in data:
            body = row.get("data") or row.get("body")
            images.append(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
        return np.stack(images)  # one request per batch unless the model's batch_size says otherwise

    def inference(self, images: np.ndarray) -> np.ndarray:
        if self.onnx:
            return self.model.run(None, {self.model.get_inputs()[0].name: images})[0]
        with torch.inference_mode():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32)
            y = torch.clamp(torch.round(self.model(x)), 0.0, 255.0)
            return y.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def postprocess(self, images: np.ndarray) -> list[bytes]:
        out = []
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=QUALITY)
            out.append(buffer.getvalue())
            self.context.set_response_header(i, "x-precision", self.precision)
            self.context.set_response_header(i, "content-type", "image/jpeg")
        return out
