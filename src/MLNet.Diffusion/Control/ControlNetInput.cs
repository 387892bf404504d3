using Microsoft.ML.Data;

namespace MLNet.Diffusion;

/// <summary>
/// One ControlNet of a generation: its folder, the control image that steers it (an edge map, depth map, pose skeleton or
/// scribble, at any size: it is resized to the generation size and read as RGB from 0 to 1), how strongly it steers and
/// during which part of the schedule. Several ControlNets sum their residuals (diffusers' <c>MultiControlNetModel</c>).
/// </summary>
/// <param name="modelDirectory">The ControlNet's folder: <c>model.onnx</c> in it (OnnxStack's layout) or
/// <c>controlnet/model.onnx</c>. It must be a ControlNet for the model's family (an SD 1.5 ControlNet with SD 1.x models).</param>
/// <param name="image">The control image used for every image of the call that does not give its own
/// (<see cref="ImagePrompt.ControlImages"/>); the caller keeps ownership.</param>
public sealed class ControlNetInput(string modelDirectory, MLImage? image = null)
{
    /// <summary>The ControlNet's folder (or its .onnx file).</summary>
    public string ModelDirectory { get; } = modelDirectory;

    /// <summary>The control image for images that do not give their own; null: every image must give one.</summary>
    public MLImage? Image { get; set; } = image;

    /// <summary>
    /// The conditioning scale: the residuals are multiplied by it (diffusers' <c>controlnet_conditioning_scale</c>). 0 turns
    /// the ControlNet off; 1 (the default) is the strength it was trained at. <see cref="ImagePrompt.ControlScale"/> overrides it.
    /// </summary>
    public float Scale { get; set; } = 1f;

    /// <summary>
    /// The fraction of the schedule at which the ControlNet starts to apply, 0 to 1 (diffusers' <c>control_guidance_start</c>):
    /// model call i of n applies it when i/n ≥ start and (i + 1)/n ≤ end. Default 0.
    /// </summary>
    public float Start { get; set; }

    /// <summary>The fraction of the schedule at which it stops applying, 0 to 1, above <see cref="Start"/> (diffusers'
    /// <c>control_guidance_end</c>). Default 1.</summary>
    public float End { get; set; } = 1f;

    /// <summary>
    /// Canny edge thresholds (low, high) to turn the control image into an edge map before use, as Canny ControlNets expect;
    /// null passes the control image as it is (a ready-made edge, depth, pose or scribble map).
    /// </summary>
    public (float Low, float High)? CannyThresholds { get; set; }
}
