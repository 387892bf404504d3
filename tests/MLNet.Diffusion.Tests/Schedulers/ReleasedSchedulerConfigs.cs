using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>The released models' scheduler configurations in the test binaries' <c>Data/schedulers/</c> (see its README).</summary>
internal static class ReleasedSchedulerConfigs
{
    public static string Directory { get; } = Path.Combine(AppContext.BaseDirectory, "Data", "schedulers");

    /// <summary>Loads <c>Data/schedulers/<paramref name="name"/>.json</c> as a model folder's configuration is loaded.</summary>
    public static SchedulerConfig Load(string name) => SchedulerConfig.Load(Path.Combine(Directory, name + ".json"));
}
