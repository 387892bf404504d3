using MLNet.Diffusion.Runtime;
namespace MLNet.Diffusion;

/// <summary>
/// A model component failed while running (not while loading): ONNX Runtime refused a call of the text encoder, UNet or
/// a VAE model, for example because a token id lies beyond the model's embedding table, a shape computed inside the
/// graph does not fit, or the graph asked for more memory than the machine has. The message is one line that names
/// the component file (<c>text_encoder/model.onnx</c>, <c>unet/model.onnx</c>, …), the inputs it was given and ONNX
/// Runtime's own description of what failed; the original <c>OnnxRuntimeException</c> is the inner exception.
/// </summary>
/// <remarks>
/// A run stopped through cancellation is not reported this way: it surfaces as <see cref="OperationCanceledException"/>.
/// Loading a file that ONNX Runtime cannot open is an <see cref="InvalidDataException"/> at load time instead.
/// </remarks>
public sealed class ModelRunException : InvalidOperationException
{
    /// <summary>Creates the exception with a message only.</summary>
    public ModelRunException() : this("A model failed while running.") { }

    /// <summary>Creates the exception with a message only.</summary>
    public ModelRunException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public ModelRunException(string message, Exception innerException) : base(message, innerException) { }

    internal ModelRunException(string message, string componentName, string modelPath, string runtimeMessage, Exception innerException)
        : base(message, innerException)
    {
        ComponentName = componentName;
        ModelPath = modelPath;
        RuntimeMessage = runtimeMessage;
    }

    /// <summary>The component's folder name (<c>text_encoder</c>, <c>unet</c>, <c>vae_decoder</c>, <c>vae_encoder</c>).</summary>
    public string ComponentName { get; } = "";

    /// <summary>The full path of the .onnx file that failed.</summary>
    public string ModelPath { get; } = "";

    /// <summary>The component file as a model folder names it: its folder and file name, for example <c>unet/model.onnx</c>.</summary>
    public string ComponentFile => OnnxModelComponent.ComponentFileOf(ModelPath);

    /// <summary>ONNX Runtime's description of the failure, on one line.</summary>
    public string RuntimeMessage { get; } = "";
}
