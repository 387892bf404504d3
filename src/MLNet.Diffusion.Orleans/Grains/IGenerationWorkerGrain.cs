namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Generates work items on the silo it runs on, with one loaded pipeline per (model, device) shared by its activations.
/// A stateless worker: activations are local to the caller (each silo's <see cref="WorkerAgent"/>), as many as the silo
/// has devices. Key: the worker key of <see cref="WorkerAgentOptions"/> (its device).
/// </summary>
public interface IGenerationWorkerGrain : IGrainWithStringKey
{
    /// <summary>Generates the item's rows in one engine call; a row that fails is retried alone so that only it fails.</summary>
    Task<WorkResult> Run(WorkItem item);
}
