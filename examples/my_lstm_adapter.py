"""A third-party adapter: LSTM cases on torch.nn.LSTMCell, stepped in Python."""

import numpy as np


class LstmCellAdapter:
    name = "torch-lstmcell"

    def available(self):
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not installed ({exc})"
        return None

    def devices(self):
        return ["cpu"]

    def supports(self, case):
        layer = case.layer
        if case.spec.kind != "layer" or layer.cell != "lstm":
            return "this example handles plain LSTM layers only"
        if case.mask is not None or layer.go_backwards or not layer.use_bias:
            return "this example handles no masks, go_backwards or use_bias=False"
        if (layer.activation, layer.recurrent_activation) != ("tanh", "sigmoid"):
            return "nn.LSTMCell is fixed to tanh/sigmoid"
        if case.earlier_x is not None:
            return "this example keeps no state from an earlier call (a stateful layer)"
        if case.dtype == "bfloat16":
            return "numpy has no bfloat16 for torch.from_numpy: this example runs float16, float32, float64"
        return None

    def run(self, case, device):
        import torch

        dtype = getattr(torch, case.dtype)
        weights = case.weights["layer"]
        units = case.layer.units
        cell = torch.nn.LSTMCell(case.features, units, dtype=dtype)
        with torch.no_grad():  # Keras columns i,f,c,o = torch rows i,f,g,o: a transpose suffices
            cell.weight_ih.copy_(torch.from_numpy(weights["kernel"].T.copy()))
            cell.weight_hh.copy_(torch.from_numpy(weights["recurrent_kernel"].T.copy()))
            cell.bias_ih.copy_(torch.from_numpy(weights["bias"]))
            cell.bias_hh.zero_()
            x = torch.from_numpy(case.x)
            zeros = torch.zeros(case.batch, units, dtype=dtype)
            h, c = [torch.from_numpy(s) for s in case.initial_state] if case.initial_state else (zeros, zeros)
            steps = []
            for t in range(case.timesteps):
                h, c = cell(x[:, t], (h, c))
                steps.append(h)
        sequence = torch.stack(steps, dim=1).numpy()
        output = sequence if case.layer.return_sequences else sequence[:, -1]
        states = [h.numpy(), c.numpy()] if case.layer.return_state else []
        return [np.asarray(output)] + states
