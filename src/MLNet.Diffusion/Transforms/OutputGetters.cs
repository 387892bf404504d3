using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>Getters for the generated columns, shared by the cursor and the row-to-row mapper's rows.</summary>
internal static class OutputGetters
{
    /// <param name="output">The column.</param>
    /// <param name="current">The current slot's generated values (generating its batch if needed).</param>
    /// <param name="imageIndex">The current slot's image index.</param>
    /// <param name="position">The current position (−1 before the first row).</param>
    /// <param name="callerOwnsImages"><see cref="DiffusionOptions.CallerOwnsImages"/>: leave the previous image alone.</param>
    public static ValueGetter<TValue> Create<TValue>(OutputColumn output, Func<SlotOutputs> current, Func<int> imageIndex, Func<long> position, bool callerOwnsImages)
    {
        Delegate getter = output.Role switch
        {
            OutputRole.ImageIndex => Typed<TValue, int>(output, (ref int value) =>
            {
                CheckPosition(position);
                value = imageIndex();
            }),
            OutputRole.Image => Typed<TValue, MLImage>(output, (ref MLImage value) =>
            {
                CheckPosition(position);
                var fresh = current().Image!.ToImage();
                // As ML.NET's image getters do: the value handed back is released (unless the caller keeps its images),
                // and each call gets its own image.
                if (!callerOwnsImages) value?.Dispose();
                value = fresh;
            }),
            _ => Typed<TValue, VBuffer<float>>(output, (ref VBuffer<float> value) =>
            {
                CheckPosition(position);
                var outputs = current();
                var source = output.Role switch
                {
                    OutputRole.PromptEmbedding => outputs.PromptEmbedding,
                    OutputRole.NegativeEmbedding => outputs.NegativeEmbedding,
                    _ => outputs.Latents,
                } ?? throw new InvalidOperationException($"Column '{output.Name}' was not computed.");
                var editor = VBufferEditor.Create(ref value, source.Length);
                source.CopyTo(editor.Values);
                value = editor.Commit();
            }),
        };
        return (ValueGetter<TValue>)getter;
    }

    private static Delegate Typed<TValue, TActual>(OutputColumn output, ValueGetter<TActual> getter)
    {
        if (typeof(TValue) != typeof(TActual))
            throw new InvalidOperationException($"Invalid TValue in GetGetter for column '{output.Name}': '{typeof(TValue)}', expected type: '{typeof(TActual)}'.");
        return getter;
    }

    private static void CheckPosition(Func<long> position)
    {
        if (position() < 0) throw new InvalidOperationException("The cursor is not on a row: call MoveNext first.");
    }
}
