using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>Residual identification: by name first, then by order and shape, and refusal of anything in between.</summary>
public sealed class ControlResidualsTests
{
    private static readonly int[] Sd15Channels = [320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280];

    private static TensorSpec Spec(string name, int channels) => new(name, TensorElementType.Float, [-1, channels, -1, -1]);

    private static TensorSpec[] Named(Func<int, string> name) =>
        [.. Sd15Channels.Select((c, i) => Spec(i == 12 ? "mid_block_additional_residual" : name(i), c))];

    [Fact]
    public void OnnxStackNamesInAnyOrderAreSortedDownFirstThenMid()
    {
        var specs = Named(i => $"down_block_{i}_additional_residual").Reverse().ToArray();
        var found = ControlResiduals.Identify(specs, "unet", "u.onnx", "input");
        Assert.Equal(Enumerable.Range(0, 12), found.Take(12).Select(r => r.Index));
        Assert.True(found[12].IsMid);
        Assert.Equal("down_block_11_additional_residual", found[11].Role);
    }

    [Fact]
    public void UnknownNamesAreReadInOrderWithTheLastAsMid()
    {
        var specs = Sd15Channels.Select((c, i) => Spec($"onnx::Add_{100 + i}", c)).ToArray();
        var found = ControlResiduals.Identify(specs, "unet", "u.onnx", "input");
        Assert.Equal("onnx::Add_100", found[0].Spec.Name);
        Assert.True(found[12].IsMid);
        Assert.Equal("onnx::Add_112", found[12].Spec.Name);
    }

    [Fact]
    public void SomeNamedAndSomeNotIsRefused()
    {
        var specs = Named(i => i == 5 ? "onnx::Add_5" : $"down_block_{i}_additional_residual");
        var e = Assert.Throws<InvalidDataException>(() => ControlResiduals.Identify(specs, "unet", "u.onnx", "input"));
        Assert.Contains("'onnx::Add_5' cannot be identified by name", e.Message);
        Assert.Contains("u.onnx", e.Message);
    }

    [Fact]
    public void ChannelsThatBreakThePatternAreRefusedWhenReadByOrder()
    {
        // The mid residual first (1280) then the down ones: read by order, channels would fall.
        var specs = Sd15Channels.Reverse().Select((c, i) => Spec($"r{i}", c)).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => ControlResiduals.Identify(specs, "unet", "u.onnx", "input"));
        Assert.Contains("not the down-block pattern", e.Message);
    }

    [Fact]
    public void AMissingDownResidualIsNamed()
    {
        var specs = Named(i => $"down_block_{(i >= 4 ? i + 1 : i)}_additional_residual");
        var e = Assert.Throws<InvalidDataException>(() => ControlResiduals.Identify(specs, "controlnet", "c.onnx", "output"));
        Assert.Contains("down-block residual 4 is missing", e.Message);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    [InlineData(8, 4)]
    [InlineData(11, 8)]
    public void ResolutionFactorsFollowTheDownBlocks(int index, int factor)
    {
        Assert.Equal(factor, ControlResiduals.Factor(new ControlResidual(index, false, Spec("x", 4)), 12));
        Assert.Equal(8, ControlResiduals.Factor(new ControlResidual(0, true, Spec("x", 4)), 12));
        Assert.Equal(4, ControlResiduals.Factor(new ControlResidual(0, true, Spec("x", 4)), 9));
    }

    [Theory]
    [InlineData(64, 8, 8)]
    [InlineData(13, 2, 7)]
    [InlineData(13, 8, 2)]
    public void ResidualSidesRoundUpAsAStrideTwoConvolution(int latent, int factor, int side) =>
        Assert.Equal(side, ControlResiduals.Side(latent, factor));
}
