using MLNet.Diffusion.Schedulers;
namespace MLNet.Diffusion.Noise;

/// <summary>
/// Noise for a batch of images, each with its own seeded generator: the span handed to
/// <see cref="Fill"/> is split into equal parts, one per image, so an image's noise depends only on its
/// own seed and not on which other images share its batch.
/// </summary>
internal sealed class BatchNoise : INoiseSource
{
    private readonly INoiseSource[] _items;

    /// <summary>One generator per image, in batch order.</summary>
    public BatchNoise(IReadOnlyList<long> seeds)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        if (seeds.Count == 0) throw new ArgumentException("At least one seed is needed.", nameof(seeds));
        _items = new INoiseSource[seeds.Count];
        for (int i = 0; i < _items.Length; i++) _items[i] = new GaussianNoise(seeds[i]);
    }

    /// <summary>Wraps existing per-image sources.</summary>
    public BatchNoise(params INoiseSource[] items)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Length == 0) throw new ArgumentException("At least one source is needed.", nameof(items));
        _items = items;
    }

    /// <summary>The number of images.</summary>
    public int Count => _items.Length;

    /// <inheritdoc />
    public void Fill(Span<float> destination)
    {
        if (destination.Length % _items.Length != 0)
            throw new ArgumentException($"A span of {destination.Length} values cannot be split evenly between {_items.Length} images.", nameof(destination));
        int per = destination.Length / _items.Length;
        for (int i = 0; i < _items.Length; i++)
            _items[i].Fill(destination.Slice(i * per, per));
    }
}
