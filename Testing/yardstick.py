"""The yardstick for inference speed: a plain reading of ``NETWORK_SPEC.md``, section by section.

Functions on the authors' flat state dict, float32 throughout, no folding, no stacking, nothing
skipped but the training-only discriminator. ``bsafusion benchmark-speed`` times our engine against
it (docs/BENCHMARKS.md); ``Testing/core/test_yardstick.py`` checks it against the reference fixture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

State = dict[str, Tensor]


def conv(x: Tensor, w: State, key: str, padding: int = 0) -> Tensor:
    return F.conv2d(x, w[f"{key}.weight"], w[f"{key}.bias"], padding=padding)


def linear(x: Tensor, w: State, key: str) -> Tensor:
    return F.linear(x, w[f"{key}.weight"], w.get(f"{key}.bias"))


def plane_norm(x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-2:])


def up2(x: Tensor, align_corners: bool) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)


def restormer(x: Tensor, w: State, p: str) -> Tensor:
    """Section 1: R(cin, cout)."""
    x = conv(x, w, f"{p}.mlp")
    y = plane_norm(x)
    q, k, v = (conv(conv(y, w, f"{p}.mdta.conv{i}.0"), w, f"{p}.mdta.conv{i}.1", 1) for i in (1, 2, 3))
    n, c, h, wd = q.shape
    scores = torch.bmm(k.flatten(2), q.flatten(2).transpose(1, 2))  # K @ Q, (N, C, C)
    scores = torch.softmax(scores.flatten(1), dim=1).view(n, c, c)  # jointly over C*C
    out = torch.bmm(v.flatten(2).transpose(1, 2), scores)  # V @ S, (N, HW, C)
    x = conv(out.transpose(1, 2).reshape(n, c, h, wd), w, f"{p}.mdta.conv4") + x
    y = plane_norm(x)
    a = conv(conv(y, w, f"{p}.gdfn.Dconv1.0"), w, f"{p}.gdfn.Dconv1.1", 1)
    b = conv(conv(y, w, f"{p}.gdfn.Dconv2.0"), w, f"{p}.gdfn.Dconv2.1", 1)
    return x + conv(F.gelu(a) * b, w, f"{p}.gdfn.conv")


def vit_block(x: Tensor, w: State, p: str) -> Tensor:
    """Section 3: T, both residual branches through norm_layer2."""
    norm = lambda t: F.layer_norm(t, (256,), w[f"{p}.norm_layer2.weight"], w[f"{p}.norm_layer2.bias"])  # noqa: E731
    n, length, _ = x.shape
    qkv = linear(norm(x), w, f"{p}.attention.qkv").view(n, length, 3, 4, 64).permute(2, 0, 3, 1, 4)
    attention = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / 8.0, dim=-1) @ qkv[2]
    x = x + linear(attention.transpose(1, 2).reshape(n, length, 256), w, f"{p}.attention.out_proj")
    return x + linear(F.gelu(linear(norm(x), w, f"{p}.mlp.linear1")), w, f"{p}.mlp.linear2")


def classify(deep: Tensor, w: State) -> tuple[Tensor, Tensor]:
    """Section 4: (head token, patch tokens) of the modality classifier."""
    n, _, h, wd = deep.shape
    position = F.interpolate(w["classifier.embedding.position_embedding"], size=(h, wd), mode="bilinear",
                             align_corners=True)
    tokens = F.conv2d(deep + position, w["classifier.embedding.patch_embedding.weight"],
                      w["classifier.embedding.patch_embedding.bias"], stride=16).flatten(2).transpose(1, 2)
    x = torch.cat((w["classifier.cls_token"].expand(n, 1, 256), tokens), dim=1)
    for i in (0, 1):
        x = vit_block(x, w, f"classifier.vit_blks.vit{i}")
    return x[:, 0], x[:, 1:]


def transfer(tokens: Tensor, head_other: Tensor, w: State, side: int) -> Tensor:
    """Section 5: head injection, the appended token, two blocks, the first token dropped."""
    x = tokens + head_other[:, None]
    x = torch.cat((x, w[f"transfer.cls{side}"].expand(x.shape[0], 1, 256)), dim=1)
    for i in (0, 1):
        x = vit_block(x, w, f"transfer.VitBLK{side}.vit{i}")
    return x[:, 1:]


def token_map(tokens: Tensor, h: int, wd: int) -> Tensor:
    """Section 6."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], 256, h // 16, wd // 16)


def feature_warp(x: Tensor, phi: Tensor) -> Tensor:
    """Section 7, with its normalisation quirk."""
    _, _, h, wd = x.shape
    i, j = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(wd, dtype=x.dtype), indexing="ij")
    gx = 2 * (j + phi[:, 0]) / (wd - 1) - 1
    gy = 2 * (i + phi[:, 1]) / (h - 1) - 1
    return F.grid_sample(x, torch.stack((gx, gy), dim=-1), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def registration_layer(s: Tensor, g2: Tensor, w: State, p: str, last: bool) -> tuple[Tensor | None, Tensor]:
    """Section 8: FR(c_i -> c_i+1)."""
    g = F.leaky_relu(conv(g2, w, f"{p}.conv1x1.0"))

    def cross(a: Tensor, b: Tensor) -> Tensor:
        a1 = F.relu(conv(a, w, f"{p}.crossAtt1.conv1.0", 1))
        b1 = F.relu(conv(b, w, f"{p}.crossAtt1.conv2.0", 1))
        return a1 * torch.softmax((a1 * b1).flatten(2), dim=2).view_as(a1) + a

    s2 = cross(s, g) + cross(g, s)
    s3 = s2 + F.relu(conv(s2, w, f"{p}.feature_output.0.feature_output.0", 1))
    phi = torch.tanh(conv(s3, w, f"{p}.flow_output.0", 1))
    following = None if last else F.leaky_relu(conv(up2(s3, True), w, f"{p}.up1.1"))
    return following, phi


def decoder(x: Tensor, w: State, k: int) -> Tensor:
    x = conv(conv(up2(x, True), w, f"D.up{k}.up_sample.1"), w, f"D.up{k}.conv1", 1)
    return F.leaky_relu(F.instance_norm(x, eps=1e-5))


def bsfa(map_a: Tensor, map_b: Tensor, w: State, size: tuple[int, int]) -> Tensor:
    """Section 8: the flow (N, 2, H, W) from the Transfer token maps."""
    feat_a, feat_b, state_a, state_b = map_a, map_b, map_a, map_b
    flow_a = flow_b = 0
    for i in range(1, 6):
        g2 = torch.cat((feat_a, feat_b), dim=1)
        state_a, phi_a = registration_layer(state_a, g2, w, f"f1_FR{i}", i == 5)
        state_b, phi_b = registration_layer(state_b, g2, w, f"f2_FR{i}", i == 5)
        feat_a, feat_b = feature_warp(feat_a, phi_a), feature_warp(feat_b, phi_b)
        if i < 5:
            feat_a, feat_b = decoder(feat_a, w, i), decoder(feat_b, w, i)
        scale = 2 ** (5 - i)
        flow_a = flow_a + scale * F.interpolate(phi_a, size=size, mode="bilinear", align_corners=True)
        flow_b = flow_b + scale * F.interpolate(phi_b, size=size, mode="bilinear", align_corners=True)
    return flow_b - flow_a


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Section 9: pixel-exact backward warp, border values outside."""
    _, _, h, wd = image.shape
    i, j = torch.meshgrid(torch.arange(h, dtype=image.dtype), torch.arange(wd, dtype=image.dtype), indexing="ij")
    grid = torch.stack((2 * (j + flow[:, 0]) / (wd - 1) - 1, 2 * (i + flow[:, 1]) / (h - 1) - 1), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def fuse(ua: Tensor, ub: Tensor, shallow_a: Tensor, shallow_b: Tensor, flow: Tensor, w: State) -> Tensor:
    """Section 10: MMFF."""
    h = flow.shape[-2]

    def flow_at(x: Tensor) -> Tensor:
        scale = h / x.shape[-2]
        return F.interpolate(flow, size=x.shape[-2:], mode="bilinear", align_corners=False) / scale

    feat = restormer(torch.cat((ua, feature_warp(ub, flow_at(ub))), dim=1), w, "F1")
    for k in (1, 2, 3):
        ua = F.relu(conv(up2(ua, False), w, f"up_sample{k}.up1.1"))
        ub = F.relu(conv(up2(ub, False), w, f"up_sample{k}.up1.1"))
        feat = F.relu(conv(up2(feat, False), w, f"up_sample{k}.up3.1"))
        feat = restormer(torch.cat((ua, feature_warp(ub, flow_at(ub)), feat), dim=1), w, f"F{k + 1}")
    feat = up2(feat, False)
    out = torch.cat((feat, shallow_a, feature_warp(shallow_b, flow)), dim=1)
    return torch.sigmoid(restormer(restormer(out, w, "outLayer.0"), w, "outLayer.1"))


def state_of(checkpoint: dict[str, State]) -> State:
    """The authors' four state dicts as one flat dict (their key names do not overlap)."""
    return {k: v.float() for part in checkpoint.values() for k, v in part.items()}


@torch.inference_mode()
def forward(fixed: Tensor, moving: Tensor, w: State) -> tuple[Tensor, Tensor, Tensor]:
    """(fused, warped moving, flow) of (N,1,H,W) images, as the published network gives them."""
    size = tuple(fixed.shape[-2:])
    shallow_a = restormer(fixed, w, "rb1")
    shallow_b = restormer(moving, w, "rb1")
    head_a, tokens_a = classify(restormer(shallow_a, w, "rb2"), w)
    head_b, tokens_b = classify(restormer(shallow_b, w, "rb2"), w)
    map_a = token_map(transfer(tokens_a, head_b, w, 1), *size)
    map_b = token_map(transfer(tokens_b, head_a, w, 2), *size)
    flow = bsfa(map_a, map_b, w, size)
    fused = fuse(token_map(tokens_a, *size), token_map(tokens_b, *size), shallow_a, shallow_b, flow, w)
    return fused, warp(moving, flow), flow
