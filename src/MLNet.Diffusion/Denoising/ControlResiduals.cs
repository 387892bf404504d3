using System.Globalization;
using System.Text.RegularExpressions;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>
/// One ControlNet residual as a model declares it: a down-block residual (<see cref="Index"/> 0, 1, …) or the mid-block
/// residual (<see cref="IsMid"/>), with the input (UNet) or output (ControlNet) that carries it.
/// </summary>
internal sealed record ControlResidual(int Index, bool IsMid, TensorSpec Spec)
{
    /// <summary>The residual's name in OnnxStack's contract: <c>down_block_{i}_additional_residual</c> or <c>mid_block_additional_residual</c>.</summary>
    public string Role => IsMid ? ControlResiduals.MidName : string.Format(CultureInfo.InvariantCulture, ControlResiduals.DownNameFormat, Index);

    /// <summary>The channels when the model fixes them, else 0.</summary>
    public int Channels => Spec.Dimensions[1] > 0 ? Spec.Dimensions[1] : 0;
}

/// <summary>
/// The one place where ControlNet residuals are recognised, on both sides: a ControlNet's outputs and a ControlNet-ready
/// UNet's inputs. OnnxStack's converter names them <c>down_block_{i}_additional_residual</c> (i = 0 … 11 for SD 1.x/2.x,
/// 0 … 8 for SDXL) and <c>mid_block_additional_residual</c>; other exports use diffusers' argument names
/// (<c>down_block_additional_residuals.{i}</c>, <c>down_block_res_samples.{i}</c>, <c>mid_block_res_sample</c>) or names
/// that tell nothing. Residuals are identified by name first; a model whose residuals all have unknown names is read by
/// order and shape (the down residuals in order, then the mid residual, as diffusers' <c>ControlNetModel.forward</c>
/// returns them), and anything in between (some named, some not; a count other than 13 or 10; channels that break the
/// pattern) is refused with the tensors listed.
/// </summary>
/// <remarks>
/// The pattern (diffusers' <c>UNet2DConditionModel</c> with <c>layers_per_block</c> 2): the first residual is
/// <c>conv_in</c>'s output, then each down block gives its two resnets' outputs and, except the last block, its
/// downsampler's. So down residual i is at 1/2^⌊i/3⌋ of the latent size, and the mid residual at the last down residual's;
/// SD 1.5's channels are 320 ×4, 640 ×3, 1280 ×5 and mid 1280 (a downsampler keeps its block's channels).
/// </remarks>
internal static partial class ControlResiduals
{
    /// <summary>OnnxStack's name of down residual i.</summary>
    public const string DownNameFormat = "down_block_{0}_additional_residual";

    /// <summary>OnnxStack's name of the mid residual.</summary>
    public const string MidName = "mid_block_additional_residual";

    /// <summary>Down residuals of SD 1.x/2.x (four down blocks) and of SDXL (three).</summary>
    public const int SdDownCount = 12, XlDownCount = 9;

    [GeneratedRegex(@"^(?:down_block_(\d+)_additional_residual|down_block_additional_residuals\.(\d+)|down_block_res_samples?\.(\d+)|down_block_res_sample_(\d+))$")]
    private static partial Regex DownName();

    /// <summary>The residual a name tells: (index, false) for a down residual, (0, true) for the mid one, null for an unknown name.</summary>
    public static (int Index, bool IsMid)? ByName(string name)
    {
        if (name is MidName or "mid_block_res_sample" or "mid_block_additional_residuals") return (0, true);
        var m = DownName().Match(name);
        if (!m.Success) return null;
        var digits = m.Groups.Cast<Group>().Skip(1).First(g => g.Success).Value;
        return int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < 64 ? (i, false) : null;
    }

    /// <summary>
    /// Identifies the residuals among <paramref name="candidates"/> (a UNet's inputs of rank 4 beyond <c>sample</c>, or a
    /// ControlNet's outputs), in declared order. Returns them down residuals first (by index), the mid residual last; empty
    /// when there are no candidates.
    /// </summary>
    /// <param name="candidates">The tensors, in the order the model declares them.</param>
    /// <param name="component">The component's folder name, for messages.</param>
    /// <param name="modelPath">The model file, for messages.</param>
    /// <param name="side">"input" or "output", for messages.</param>
    /// <exception cref="InvalidDataException">The residuals cannot be told apart; the message lists them and the contract.</exception>
    public static IReadOnlyList<ControlResidual> Identify(IReadOnlyList<TensorSpec> candidates, string component, string modelPath, string side)
    {
        if (candidates.Count == 0) return [];
        InvalidDataException Refuse(string problem) => new(
            $"The {component} model '{modelPath}' cannot be used with a ControlNet: {problem}. Its {side}s of rank 4: {string.Join(", ", candidates)}. " +
            $"A ControlNet's residuals are {string.Format(CultureInfo.InvariantCulture, DownNameFormat, 0)} … {string.Format(CultureInfo.InvariantCulture, DownNameFormat, SdDownCount - 1)} " +
            $"({SdDownCount} for SD 1.x/2.x, {XlDownCount} for SDXL) and {MidName}, float [batch, channels, height, width], as OnnxStack's converter exports them. " +
            "Re-export the model with those names.");
        foreach (var spec in candidates)
            if (!spec.IsFloatingPoint)
                throw Refuse($"'{spec.Name}' is {TensorSpec.ElementName(spec.ElementType)}, where residuals are float or float16");

        var named = candidates.Select(s => (Spec: s, Role: ByName(s.Name))).ToArray();
        int known = named.Count(n => n.Role is not null);
        List<ControlResidual> found;
        if (known == candidates.Count)
        {
            found = [.. named.Select(n => new ControlResidual(n.Role!.Value.Index, n.Role.Value.IsMid, n.Spec))];
            var mids = found.Where(r => r.IsMid).ToArray();
            if (mids.Length != 1) throw Refuse(mids.Length == 0 ? "it has no mid-block residual" : $"both '{mids[0].Spec.Name}' and '{mids[1].Spec.Name}' name the mid-block residual");
            var downs = found.Where(r => !r.IsMid).OrderBy(r => r.Index).ToArray();
            for (int i = 0; i < downs.Length; i++)
                if (downs[i].Index != i)
                    throw Refuse(downs[i].Index < i
                        ? $"both '{downs[i - 1].Spec.Name}' and '{downs[i].Spec.Name}' name down-block residual {downs[i].Index}"
                        : $"down-block residual {i} is missing (the next is '{downs[i].Spec.Name}')");
            found = [.. downs, mids[0]];
        }
        else if (known > 0)
        {
            var unknown = named.First(n => n.Role is null).Spec;
            throw Refuse($"'{unknown.Name}' cannot be identified by name while other residuals can, so their order cannot be trusted");
        }
        else
        {
            // No names: diffusers' order, down residuals then the mid one.
            found = [.. candidates.Select((s, i) => new ControlResidual(i == candidates.Count - 1 ? 0 : i, i == candidates.Count - 1, s))];
        }

        int downCount = found.Count - 1;
        if (downCount is not (SdDownCount or XlDownCount))
            throw Refuse($"it has {downCount} down-block residuals, where SD 1.x/2.x have {SdDownCount} and SDXL {XlDownCount}");
        // Channels never fall from one down residual to the next, and the mid residual has the last one's.
        for (int i = 1; i < found.Count; i++)
        {
            int before = found[i - 1].Channels, now = found[i].Channels;
            if (before > 0 && now > 0 && (found[i].IsMid ? now != before : now < before))
                throw Refuse($"'{found[i].Spec.Name}' has {now} channels after '{found[i - 1].Spec.Name}' with {before}, which is not the down-block pattern (channels never fall, and the mid residual has the last down residual's)");
        }
        return found;
    }

    /// <summary>How many times smaller than the latents residual <paramref name="residual"/> is along each side: 2^⌊i/3⌋, the mid one the last down residual's.</summary>
    public static int Factor(ControlResidual residual, int downCount) => 1 << ((residual.IsMid ? downCount - 1 : residual.Index) / 3);

    /// <summary>
    /// A residual's side at latent side <paramref name="latent"/>: halved (rounding up, as a stride-2 convolution with
    /// padding 1 does) once per level.
    /// </summary>
    public static int Side(int latent, int factor)
    {
        int side = latent;
        for (int f = factor; f > 1; f >>= 1) side = (side + 1) / 2;
        return side;
    }

    /// <summary>
    /// Checks that a ControlNet's outputs feed a UNet's residual inputs: the same count, and for each residual the same
    /// channels and spatial size wherever both models fix them, and the same element type (the buffers are shared).
    /// </summary>
    /// <exception cref="InvalidDataException">The first mismatch, named, with both models' files.</exception>
    public static void CheckMatch(IReadOnlyList<ControlResidual> controlNet, string controlNetPath, IReadOnlyList<ControlResidual> unet, string unetPath)
    {
        string Both(string problem) =>
            $"The ControlNet '{controlNetPath}' does not fit the ControlNet-ready UNet '{unetPath}': {problem}. A ControlNet works only with the base model it was trained for " +
            "(SD 1.5 ControlNets with SD 1.x models, SDXL ControlNets with SDXL): pick the matching pair.";
        if (unet.Count == 0)
            throw new InvalidDataException(Both("the UNet takes no ControlNet residuals"));
        if (controlNet.Count != unet.Count)
            throw new InvalidDataException(Both($"the ControlNet gives {controlNet.Count - 1} down-block residuals and the UNet takes {unet.Count - 1}"));
        for (int i = 0; i < unet.Count; i++)
        {
            var c = controlNet[i].Spec;
            var u = unet[i].Spec;
            string role = unet[i].Role;
            if (controlNet[i].Channels > 0 && unet[i].Channels > 0 && controlNet[i].Channels != unet[i].Channels)
                throw new InvalidDataException(Both($"{role}: the ControlNet gives {controlNet[i].Channels} channels ({c}) and the UNet takes {unet[i].Channels} ({u})"));
            for (int axis = 2; axis < 4; axis++)
                if (c.Dimensions[axis] > 0 && u.Dimensions[axis] > 0 && c.Dimensions[axis] != u.Dimensions[axis])
                    throw new InvalidDataException(Both($"{role}: the ControlNet gives {(axis == 2 ? "height" : "width")} {c.Dimensions[axis]} ({c}) and the UNet takes {u.Dimensions[axis]} ({u}), a different resolution factor"));
            if (c.ElementType != u.ElementType)
                throw new InvalidDataException(Both($"{role}: the ControlNet gives {TensorSpec.ElementName(c.ElementType)} and the UNet takes {TensorSpec.ElementName(u.ElementType)}; export both at the same precision"));
        }
    }

    /// <summary>The channels of each residual: the UNet's where it fixes them, else the ControlNet's.</summary>
    /// <exception cref="InvalidDataException">Neither model fixes a residual's channels.</exception>
    public static int Channels(ControlResidual unet, ControlResidual? controlNet, string unetPath) =>
        unet.Channels > 0 ? unet.Channels
        : controlNet?.Channels > 0 ? controlNet.Channels
        : throw new InvalidDataException($"The unet model '{unetPath}' does not fix the channels of its residual input {unet.Spec}, and no ControlNet does: re-export it with fixed channels.");
}
