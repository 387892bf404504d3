namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// One model component of a <see cref="LoadedModel"/> (the prompt encoder, the VAE decoder or encoder), either loaded
/// for the model's lifetime or, in <see cref="DiffusionRuntimeOptions.LowMemory"/>, loaded when a call needs it and
/// released when the last call holding it returns. Every run of the component goes through <see cref="Acquire"/>, whose
/// <see cref="Hold"/> keeps the session alive until it is disposed: concurrent calls share one loaded instance, and
/// none loses it while it runs.
/// </summary>
/// <typeparam name="T">The component.</typeparam>
internal sealed class ComponentSlot<T> : IDisposable where T : class, IDisposable
{
    private readonly Func<T>? _load;
    private readonly Lock _gate = new();
    private T? _live;
    private int _holds;
    private bool _disposed;

    /// <summary>A component loaded for the model's lifetime: <see cref="Acquire"/> takes no lock and counts nothing.</summary>
    public ComponentSlot(T loaded)
    {
        _live = loaded;
        Description = loaded;
    }

    /// <summary>
    /// A component loaded on demand. <paramref name="first"/>, the instance loaded to check the folder, is released at
    /// once and kept as <see cref="Description"/>; <paramref name="load"/> makes a new instance when a call needs one.
    /// </summary>
    public ComponentSlot(T first, Func<T> load)
    {
        Description = first;
        _load = load;
        first.Dispose();
    }

    /// <summary>
    /// The instance whose declared inputs and outputs describe the component (names, widths, sequence length). When
    /// the component loads on demand its session is released: read its description, never run it.
    /// </summary>
    public T Description { get; }

    /// <summary>Whether the component is loaded only while a call holds it.</summary>
    public bool LoadsOnDemand => _load is not null;

    /// <summary>Whether a session is loaded now.</summary>
    public bool IsLoaded
    {
        get
        {
            lock (_gate) return _live is not null;
        }
    }

    /// <summary>The loaded component, loading it if it is not (one load for concurrent first callers), held until the
    /// returned <see cref="Hold"/> is disposed.</summary>
    /// <exception cref="ObjectDisposedException">The model has been released.</exception>
    public Hold Acquire()
    {
        if (_load is null) return new Hold(null, _live ?? throw new ObjectDisposedException(typeof(T).Name));
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _live ??= _load();
            _holds++;
            return new Hold(this, _live);
        }
    }

    private void Release()
    {
        T? idle = null;
        lock (_gate)
        {
            if (--_holds == 0)
            {
                idle = _live;
                _live = null;
            }
        }
        idle?.Dispose();
    }

    /// <summary>Releases the loaded session, if any (the model's owner calls this once no call runs).</summary>
    public void Dispose()
    {
        T? live;
        lock (_gate)
        {
            _disposed = true;
            live = _live;
            _live = null;
        }
        live?.Dispose();
    }

    /// <summary>A call's hold on the loaded component; disposing it lets an on-demand component be released.</summary>
    public readonly struct Hold : IDisposable
    {
        private readonly ComponentSlot<T>? _slot;

        internal Hold(ComponentSlot<T>? slot, T value)
        {
            _slot = slot;
            Value = value;
        }

        /// <summary>The loaded component.</summary>
        public T Value { get; }

        /// <summary>Releases the hold.</summary>
        public void Dispose() => _slot?.Release();
    }
}
