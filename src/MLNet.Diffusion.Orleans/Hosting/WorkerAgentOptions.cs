namespace MLNet.Diffusion.Orleans;

/// <summary>What a silo's <see cref="WorkerAgent"/> serves.</summary>
public sealed class WorkerAgentOptions
{
    /// <summary>The devices to serve, one worker each (<see cref="WorkerDevice.Cpu"/>, <see cref="WorkerDevice.Cuda"/>); default one CPU worker.</summary>
    public IList<string> Devices { get; } = [WorkerDevice.Cpu];

    /// <summary>How long an idle worker waits before asking for work again.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a worker whose model failed to load leaves that job alone before trying it again.</summary>
    public TimeSpan LoadFailureBackoff { get; set; } = TimeSpan.FromSeconds(30);
}
