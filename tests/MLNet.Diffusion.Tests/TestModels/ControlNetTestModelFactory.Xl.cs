namespace MLNet.Diffusion.Tests.TestModels;

// SDXL's side of the ControlNet test models: the XL oracle UNet with 9 down residuals and the mid one, and a ControlNet that
// also takes text_embeds and time_ids.
public static partial class ControlNetTestModelFactory
{
    /// <summary>
    /// Writes an SDXL-family test model folder (<see cref="XlTestModelFactory.Create"/>) with a ControlNet-ready UNet at
    /// <c>controlnet/model.onnx</c> beside the plain one: 9 down residuals (three levels) and the mid one.
    /// </summary>
    public static string CreateXlModel(string directory, XlTestModelOptions model, ControlNetTestOptions? o = null)
    {
        o ??= new ControlNetTestOptions { LevelChannels = [4, 8, 16] };
        string root = XlTestModelFactory.Create(directory, model);
        var graph = XlTestModelGraphs.Unet(model, XlTestModelFactory.AlphasCumprod(model), (g, target) => AddResidualShift(g, target, AsSd(model), o));
        graph.Save(Path.Combine(root, "controlnet", "model.onnx"));
        return root;
    }

    /// <summary>Writes an SDXL ControlNet (with <c>text_embeds</c> and <c>time_ids</c>) for <paramref name="model"/>.</summary>
    public static string CreateXlControlNet(string directory, XlTestModelOptions model, ControlNetTestOptions? o = null)
    {
        o ??= new ControlNetTestOptions { LevelChannels = [4, 8, 16] };
        return CreateControlNet(directory, AsSd(model), o with { Xl = true, PooledWidth = model.ResolvedPooledWidth });
    }

    /// <summary>The boundary settings of an SDXL test model as the SD options the graphs read (width, precision, timestep form).</summary>
    private static TestModelOptions AsSd(XlTestModelOptions model) => new() { EmbeddingWidth = model.ContextWidth, Fp16 = model.Fp16, Timestep = model.Timestep };
}
