"""Token side of BSAFusion: ViT blocks, the modality classifier (MFRH), head injection and
the Transfer blocks, and the modality discriminator (spec sections 3 to 5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import resize

WIDTH = 256
HEADS = 4
PATCH = 16


class SelfAttention(nn.Module):
    def __init__(self, width: int = WIDTH, heads: int = HEADS, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out_proj = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        n, length, width = x.shape
        # The 3*width outputs are laid out as (q|k|v, head, head_dim).
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        # Explicit softmax attention: the published arithmetic (a fused SDPA kernel rounds differently).
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = self.dropout(weights) @ v
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class FeedForward(nn.Module):
    def __init__(self, width: int = WIDTH, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width, width)
        self.linear2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.gelu(self.linear1(x))))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block T."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = SelfAttention(dropout=dropout)
        self.mlp = FeedForward(dropout=dropout)
        self.norm_layer1 = nn.LayerNorm(WIDTH)  # (quirk) in the checkpoint, never used
        self.norm_layer2 = nn.LayerNorm(WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        # (quirk) both residual branches are normalised by norm_layer2.
        x = x + self.attention(self.norm_layer2(x))
        return x + self.mlp(self.norm_layer2(x))


class TransformerStack(nn.Module):
    """Two blocks T, keys ``vit0`` and ``vit1``."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.vit0 = TransformerBlock(dropout)
        self.vit1 = TransformerBlock(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.vit1(self.vit0(x))


class PatchEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.position_embedding = nn.Parameter(torch.zeros(1, 1, 256, 256))
        self.patch_embedding = nn.Conv2d(3, WIDTH, kernel_size=PATCH, stride=PATCH)

    def forward(self, deep: Tensor) -> Tensor:
        position = resize(self.position_embedding, deep.shape[-2:], align_corners=True)
        return self.patch_embedding(deep + position).flatten(2).transpose(1, 2)


class ModalityClassifier(nn.Module):
    """ViT over the deep features; its head token is the modality feature representation.

    Also serves as the modality discriminator, which is fed token sequences directly.
    """

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.embedding = PatchEmbedding()
        self.vit_blks = TransformerStack(dropout)
        self.norm = nn.LayerNorm(WIDTH)  # in the checkpoint, never used
        self.head = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, 2))

    def classify_tokens(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (logits, head token, patch tokens) for a (N, P, 256) sequence."""
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = self.vit_blks(torch.cat((cls, tokens), dim=1))
        head_token = x[:, 0]
        return self.head(head_token), head_token, x[:, 1:]

    def forward(self, deep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.classify_tokens(self.embedding(deep))


class HeadInjectionTransfer(nn.Module):
    """Adds each modality's head token to the other's patch tokens, then two ViT blocks per side."""

    def __init__(self) -> None:
        super().__init__()
        self.cls1 = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.cls2 = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.VitBLK1 = TransformerStack()
        self.VitBLK2 = TransformerStack()

    @staticmethod
    def _side(tokens: Tensor, other_head: Tensor, extra: Tensor, blocks: nn.Module) -> Tensor:
        x = tokens + other_head.unsqueeze(1)
        # (quirk) the extra token goes at the END, and the FIRST output token is dropped.
        x = torch.cat((x, extra.expand(x.shape[0], -1, -1)), dim=1)
        return blocks(x)[:, 1:]

    def forward(
        self, tokens_a: Tensor, tokens_b: Tensor, head_a: Tensor, head_b: Tensor
    ) -> tuple[Tensor, Tensor]:
        return (
            self._side(tokens_a, head_b, self.cls1, self.VitBLK1),
            self._side(tokens_b, head_a, self.cls2, self.VitBLK2),
        )


class TransferNet(nn.Module):
    """The ``transfer_state_dict`` of a checkpoint: classifier, Transfer blocks, discriminator."""

    def __init__(self) -> None:
        super().__init__()
        self.transfer = HeadInjectionTransfer()
        self.classifier = ModalityClassifier()
        self.modal_dis = ModalityClassifier()
