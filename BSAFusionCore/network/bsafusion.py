"""The whole BSAFusion network (AAAI 2025), layer for layer as published."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .fusion import FusionNet
from .layers import tokens_to_map
from .registration import BidirectionalAlignment, compose_flows
from .restormer import Encoder
from .vit import PATCH, TransferNet
from .warp import warp_image

CHECKPOINT_PARTS = {
    "encoder_state_dict": "encoder",
    "transfer_state_dict": "transfer",
    "reg_net_state_dict": "reg_net",
    "fusion_net_state_dict": "fusion_net",
}


@dataclass
class BSAFusionOutput:
    """Every output and intermediate, named as in the reference fixture."""

    flow: Tensor
    fused: Tensor | None  # None when run with ``with_fusion=False``
    warped_moving: Tensor
    flow_fixed_side: Tensor
    flow_moving_side: Tensor
    flow_levels_fixed: list[Tensor] = field(default_factory=list)
    flow_levels_moving: list[Tensor] = field(default_factory=list)
    shallow_fixed: Tensor | None = None
    shallow_moving: Tensor | None = None
    deep_fixed: Tensor | None = None
    deep_moving: Tensor | None = None
    logits_fixed: Tensor | None = None
    logits_moving: Tensor | None = None
    tokens_fixed_before_transfer: Tensor | None = None
    tokens_moving_before_transfer: Tensor | None = None
    tokens_fixed_after_transfer: Tensor | None = None
    tokens_moving_after_transfer: Tensor | None = None
    transfer_logits_fixed: Tensor | None = None
    transfer_logits_moving: Tensor | None = None


def check_network_input(fixed: Tensor, moving: Tensor) -> None:
    """The published network takes (N, 1, S, S) pairs with S a multiple of 16."""
    if fixed.dim() != 4 or fixed.shape[1] != 1 or fixed.shape != moving.shape:
        raise ValueError(
            f"the network takes two (N, 1, H, W) tensors of one shape, got {tuple(fixed.shape)} "
            f"and {tuple(moving.shape)}"
        )
    h, w = fixed.shape[-2:]
    if h != w or h % PATCH or h < 2 * PATCH:
        raise ValueError(f"the network works on square images of a multiple of {PATCH} >= 32, got {h}x{w}")


class BSAFusionNet(nn.Module):
    """Shared encoder, MFRH and Transfer, BSFA registration and MMFF fusion."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.transfer = TransferNet()
        self.reg_net = BidirectionalAlignment()
        self.fusion_net = FusionNet()
        self.transfer.modal_dis.requires_grad_(False)
        self.detach_fusion_flow = False
        """Training option: the fusion branch gets the flow without gradient, so that the fusion
        loss cannot steer the registration (the published code lets it). No effect on outputs."""

    def forward(
        self, fixed: Tensor, moving: Tensor, *, with_discriminator: bool = True, with_fusion: bool = True
    ) -> BSAFusionOutput:
        """Run the pair; ``with_discriminator=False`` skips the discriminator logits, ``with_fusion=False``
        the fusion net (registration only; ``fused`` is then None)."""
        check_network_input(fixed, moving)
        n, _, h, w = fixed.shape
        grid = (h // PATCH, w // PATCH)
        shallow, deep = self.encoder(torch.cat((fixed, moving)))
        classifier = self.transfer.classifier
        logits, heads, tokens = classifier(deep)
        tokens_a, tokens_b = tokens[:n], tokens[n:]
        after_a, after_b = self.transfer.transfer(tokens_a, tokens_b, heads[:n], heads[n:])
        flows_a, flows_b = self.reg_net(tokens_to_map(after_a, *grid), tokens_to_map(after_b, *grid))
        flow_a = compose_flows(flows_a, (h, w))
        flow_b = compose_flows(flows_b, (h, w))
        flow = flow_b - flow_a
        fused = None
        if with_fusion:
            fusion_flow = flow.detach() if self.detach_fusion_flow else flow
            fused = self.fusion_net(tokens_to_map(tokens_a, *grid), tokens_to_map(tokens_b, *grid),
                                    shallow[:n], shallow[n:], fusion_flow)
        out = BSAFusionOutput(
            flow=flow, fused=fused, warped_moving=warp_image(moving, flow),
            flow_fixed_side=flow_a, flow_moving_side=flow_b,
            flow_levels_fixed=flows_a, flow_levels_moving=flows_b,
            shallow_fixed=shallow[:n], shallow_moving=shallow[n:],
            deep_fixed=deep[:n], deep_moving=deep[n:],
            logits_fixed=logits[:n], logits_moving=logits[n:],
            tokens_fixed_before_transfer=tokens_a, tokens_moving_before_transfer=tokens_b,
            tokens_fixed_after_transfer=after_a, tokens_moving_after_transfer=after_b,
        )
        if with_discriminator:
            dis_logits, _, _ = self.transfer.modal_dis.classify_tokens(torch.cat((after_a, after_b)))
            out.transfer_logits_fixed, out.transfer_logits_moving = dis_logits[:n], dis_logits[n:]
        return out

    def fuse_aligned(self, fixed: Tensor, moving: Tensor) -> Tensor:
        """Only the fusion branch, with a zero flow: for pairs that are already registered."""
        check_network_input(fixed, moving)
        n, _, h, w = fixed.shape
        grid = (h // PATCH, w // PATCH)
        shallow, deep = self.encoder(torch.cat((fixed, moving)))
        _, _, tokens = self.transfer.classifier(deep)
        maps = tokens_to_map(tokens, *grid)
        zero = fixed.new_zeros(n, 2, h, w)
        return self.fusion_net(maps[:n], maps[n:], shallow[:n], shallow[n:], zero)

    @torch.no_grad()
    def reload_discriminator(self) -> None:
        """Overwrite the (frozen) discriminator with the classifier, as after every epoch."""
        self.transfer.modal_dis.load_state_dict(self.transfer.classifier.state_dict())

    def reference_state_dict(self) -> dict[str, dict[str, Tensor]]:
        """The authors' checkpoint layout: four state dicts."""
        return {key: getattr(self, part).state_dict() for key, part in CHECKPOINT_PARTS.items()}

    @staticmethod
    def state_from_reference(checkpoint: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        """The authors' four-dict layout as one flat state dict of this network (the inverse of
        :meth:`reference_state_dict`)."""
        return {f"{part}.{name}": tensor
                for key, part in CHECKPOINT_PARTS.items() for name, tensor in checkpoint[key].items()}

    def load_reference_state_dict(self, checkpoint: dict[str, dict[str, Tensor]]) -> None:
        """Load the authors' four-dict layout (strict: every key and shape must match)."""
        for key, part in CHECKPOINT_PARTS.items():
            getattr(self, part).load_state_dict(checkpoint[key], strict=True)
