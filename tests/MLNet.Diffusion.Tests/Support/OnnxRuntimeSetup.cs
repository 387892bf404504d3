using System.Runtime.CompilerServices;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Tests.Support;

/// <summary>
/// The test process sets up ONNX Runtime's process-wide environment through the library before any test runs, as an
/// application that loads its model first does. Otherwise whichever test first touched ONNX Runtime directly (a test
/// that opens an <c>InferenceSession</c> or runs ML.NET's <c>ApplyOnnxModel</c>) would decide, and the outcome of the
/// tests that check the library's environment (its logging function, telemetry off) would depend on test order.
/// </summary>
internal static class OnnxRuntimeSetup
{
    [ModuleInitializer]
    internal static void CreateTheLibrarysEnvironment() => OnnxRuntimeEnvironment.Initialize(new DiffusionRuntimeOptions());
}
