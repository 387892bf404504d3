using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>
/// Adds the server's extra fields (<c>seed</c>, <c>steps</c>…) to the JSON body the OpenAI SDK sends, which has no
/// property for them: a client-pipeline policy, the SDK's own extension point.
/// </summary>
internal sealed class ExtraFieldsPolicy(IReadOnlyDictionary<string, object> fields) : PipelinePolicy
{
    /// <inheritdoc />
    public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
    {
        AddFields(message);
        ProcessNext(message, pipeline, currentIndex);
    }

    /// <inheritdoc />
    public override ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
    {
        AddFields(message);
        return ProcessNextAsync(message, pipeline, currentIndex);
    }

    private void AddFields(PipelineMessage message)
    {
        if (message.Request.Content is not { } content || message.Request.Headers.TryGetValue("Content-Type", out var type) && type?.Contains("json") != true) return;
        using var buffer = new MemoryStream();
        content.WriteTo(buffer);
        var body = JsonNode.Parse(buffer.ToArray())!.AsObject();
        foreach (var (name, value) in fields) body[name] = JsonSerializer.SerializeToNode(value);
        message.Request.Content = BinaryContent.Create(BinaryData.FromString(body.ToJsonString()));
    }
}
