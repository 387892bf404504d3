using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Denoising;

namespace MLNet.Diffusion.Control;

/// <summary>
/// The ControlNets of one UNet binding and what they do at each step: run those whose window holds the call, the first
/// straight into the UNet's residual buffers and the others summed into them, or leave the residuals at zero when none
/// applies (diffusers runs a ControlNet outside its window at scale 0, which gives zero residuals: skipping the run is the
/// same). Made once per batch; the ControlNet bindings travel with the UNet binding (<see cref="UNetBinding.Attachment{T}"/>),
/// so a generation of a shape seen before allocates no ControlNet buffer, and a step allocates nothing.
/// </summary>
internal sealed class ControlSet
{
    private readonly UNetBinding _unet;
    private readonly ControlNetBinding[] _bindings;
    private readonly bool[][] _windows;
    private readonly float[] _scales;
    private readonly bool _guessRamp;
    private readonly int _firstRow;                  // guess mode with guidance: the conditional half's first row

    /// <param name="nets">The ControlNets, in order.</param>
    /// <param name="unet">The UNet binding they feed.</param>
    /// <param name="conditionalOnly">Guess mode with guidance: the ControlNets see the conditional half only.</param>
    /// <param name="guessMode">Guess mode (the down residuals are ramped from 0.1 to 1).</param>
    /// <param name="windows">Per ControlNet, per call index (from the batch's first call), whether it applies.</param>
    /// <param name="scales">Per ControlNet, its conditioning scale.</param>
    public ControlSet(ControlNet[] nets, UNetBinding unet, bool conditionalOnly, bool guessMode, bool[][] windows, float[] scales)
    {
        _unet = unet;
        _windows = windows;
        _scales = scales;
        _guessRamp = guessMode;
        _firstRow = conditionalOnly ? unet.Batch / 2 : 0;
        _bindings = new ControlNetBinding[nets.Length];
        for (int k = 0; k < nets.Length; k++)
        {
            var net = nets[k];
            bool intoUNet = k == 0;
            _bindings[k] = unet.Attachment((net, conditionalOnly, intoUNet), () => new ControlNetBinding(net, unet, conditionalOnly, intoUNet));
        }
        unet.ClearResiduals();
    }

    /// <summary>The ControlNet bindings, in order.</summary>
    public IReadOnlyList<ControlNetBinding> Bindings => _bindings;

    /// <summary>
    /// Before the UNet runs at call <paramref name="call"/> (counted from the batch's first call) at timestep
    /// <paramref name="timestep"/>: the residuals of the ControlNets that apply, summed, in the UNet's residual buffers.
    /// The UNet's sample must hold this call's latent model input.
    /// </summary>
    public void Step(int call, float timestep, RunOptions runOptions)
    {
        _unet.WriteTimestep(timestep);
        bool any = false;
        for (int k = 0; k < _bindings.Length; k++)
        {
            if (!_windows[k][call]) continue;
            var binding = _bindings[k];
            binding.Run(_scales[k], runOptions);
            if (!binding.IntoUNet) binding.AddInto(copy: !any);
            any = true;
        }
        if (!any) _unet.ClearResiduals();
        else if (_guessRamp) ControlNetBinding.ApplyGuessRamp(_unet, _firstRow);
    }

}
