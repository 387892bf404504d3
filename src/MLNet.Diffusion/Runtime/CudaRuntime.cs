using System.Runtime.InteropServices;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// The two CUDA runtime calls that CUDA-graph replay needs and ONNX Runtime's C# API does not offer: copying
/// into and out of device buffers whose addresses must stay fixed (ONNX Runtime's own IO binding copies
/// host inputs into fresh device memory, which a captured graph would not see). The CUDA runtime library is
/// the one the CUDA execution provider already loaded (ONNX Runtime 1.32 links CUDA 13: <c>libcudart.so.13</c> / <c>cudart64_13.dll</c>;
/// older builds CUDA 12), newest first so that a machine with several CUDA runtimes gets the one ONNX Runtime uses.
/// </summary>
internal static unsafe class CudaRuntime
{
    private const int CudaMemcpyDefault = 4; // direction inferred from the pointers (unified virtual addressing)

    private static readonly Lazy<(IntPtr Memcpy, IntPtr Synchronize, string? Error)> s_api = new(Load);

    private static readonly string[] s_names = OperatingSystem.IsWindows()
        ? ["cudart64_13.dll", "cudart64_12.dll", "cudart64_110.dll"]
        : ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"];

    /// <summary>Whether the CUDA runtime could be loaded; <paramref name="reason"/> says why not.</summary>
    public static bool IsAvailable(out string? reason)
    {
        reason = s_api.Value.Error;
        return reason is null;
    }

    /// <summary>Copies <paramref name="bytes"/> bytes between host and device memory (either direction), synchronously.</summary>
    /// <exception cref="InvalidOperationException">The CUDA runtime is missing or the copy failed.</exception>
    public static void Copy(IntPtr destination, IntPtr source, long bytes)
    {
        var api = s_api.Value;
        if (api.Error is not null) throw new InvalidOperationException(api.Error);
        var memcpy = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int>)api.Memcpy;
        int status = memcpy(destination, source, (nuint)bytes, CudaMemcpyDefault);
        if (status != 0) throw new InvalidOperationException($"cudaMemcpy of {bytes} bytes failed with CUDA error {status}.");
        // A host-to-device copy from pageable memory may return before the DMA ends, and ONNX Runtime's compute
        // stream does not wait for the legacy default stream: finish the copy before the graph is launched.
        var sync = (delegate* unmanaged<int>)api.Synchronize;
        status = sync();
        if (status != 0) throw new InvalidOperationException($"cudaDeviceSynchronize failed with CUDA error {status}.");
    }

    private static (IntPtr, IntPtr, string?) Load()
    {
        foreach (var name in s_names)
        {
            if (!NativeLibrary.TryLoad(name, typeof(CudaRuntime).Assembly, null, out var handle)) continue;
            if (NativeLibrary.TryGetExport(handle, "cudaMemcpy", out var memcpy) && NativeLibrary.TryGetExport(handle, "cudaDeviceSynchronize", out var sync))
                return (memcpy, sync, null);
        }
        return (IntPtr.Zero, IntPtr.Zero, $"the CUDA runtime library ({string.Join(", ", s_names)}) could not be loaded");
    }
}
