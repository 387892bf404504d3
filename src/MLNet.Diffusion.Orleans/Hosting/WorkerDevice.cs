using System.Globalization;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// The device a worker serves, named as its worker grain's key: <c>cpu</c>, or <c>cuda:N</c> for CUDA device N.
/// </summary>
public static class WorkerDevice
{
    /// <summary>The key of the CPU worker.</summary>
    public const string Cpu = "cpu";

    /// <summary>The key of the worker of CUDA device <paramref name="deviceId"/>.</summary>
    public static string Cuda(int deviceId) => string.Create(CultureInfo.InvariantCulture, $"cuda:{deviceId}");

    /// <summary>The runtime options a worker with key <paramref name="key"/> loads its models with.</summary>
    /// <exception cref="ArgumentException">The key is neither <c>cpu</c> nor <c>cuda:N</c>.</exception>
    public static DiffusionRuntimeOptions RuntimeOptions(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key == Cpu) return new DiffusionRuntimeOptions { Device = ExecutionDevice.Cpu };
        if (key.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(key.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int id))
            return new DiffusionRuntimeOptions { Device = ExecutionDevice.Cuda, DeviceId = id, FallbackToCpu = false };
        throw new ArgumentException($"Worker device '{key}' is not known: use 'cpu' or 'cuda:N' (N = 0, 1, … the CUDA device number).", nameof(key));
    }
}
