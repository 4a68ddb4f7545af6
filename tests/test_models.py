"""Tests of sdrc.models: shapes of every network, parameter groups, and per-domain batch-norm recalibration."""
import pytest
import torch

from sdrc.models import batchnorm_layers, digit_net, mlp_net, recalibrate_batchnorm, resnet50_net


@pytest.mark.parametrize("channels", [1, 3])
def test_digit_net_shapes(channels):
    out = digit_net(10, in_channels=channels)(torch.randn(4, channels, 32, 32))
    assert [f.shape for f in out.feats] == [(4, 500), (4, 128)] and out.logits.shape == (4, 10)


def test_resnet50_net_shapes_without_download():
    net = resnet50_net(31, weights=None).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 224))
    assert [f.shape for f in out.feats] == [(1, 2048), (1, 512)] and out.logits.shape == (1, 31)
    backbone, head = net.parameter_groups()
    assert len(backbone) == len(list(net.backbone.parameters())) and len(head) == 6


def test_parameter_groups_cover_every_parameter_once():
    net = mlp_net(5, 3)
    backbone, head = net.parameter_groups()
    ids = [id(p) for p in backbone + head]
    assert sorted(ids) == sorted(id(p) for p in net.parameters()) and len(set(ids)) == len(ids)


def test_too_few_classes():
    with pytest.raises(ValueError, match="at least 2"):
        mlp_net(2, 1)


def test_recalibration_gives_exact_domain_statistics():
    torch.manual_seed(0)
    net = mlp_net(3, 2)
    bn = batchnorm_layers(net)[0]
    momentum = bn.momentum
    data = torch.randn(300, 3) * 2 + 4
    net.eval()
    recalibrate_batchnorm(net, data.split(100))
    pre_bn = net.backbone[0](data).detach()
    torch.testing.assert_close(bn.running_mean, pre_bn.mean(0))
    batch_vars = torch.stack([b.var(0, unbiased=True) for b in pre_bn.split(100)])
    torch.testing.assert_close(bn.running_var, batch_vars.mean(0))  # the average of the batches' statistics
    assert bn.momentum == momentum and not bn.training  # restored


def test_recalibration_separates_domains():
    "Statistics of one domain are replaced, not mixed, by those of another."
    net = mlp_net(2, 2).eval()
    recalibrate_batchnorm(net, [torch.randn(200, 2)])
    recalibrate_batchnorm(net, [torch.randn(200, 2) + 50])
    shifted = net.backbone[0](torch.full((1, 2), 50.0)).detach()[0]
    torch.testing.assert_close(batchnorm_layers(net)[0].running_mean, shifted, atol=2.0, rtol=0.1)
