using System.Text;

namespace MLNet.Diffusion.Tokenization;

/// <summary>The kinds of piece in a SentencePiece model (<c>ModelProto.SentencePiece.Type</c>).</summary>
internal enum SentencePieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>One piece of the vocabulary: its text (with <c>▁</c> for a space), its log-probability and its kind.</summary>
internal readonly record struct SentencePiece(string Piece, float Score, SentencePieceType Type);

/// <summary>
/// The parts of a SentencePiece <c>.model</c> file (a serialised <c>ModelProto</c>, sentencepiece_model.proto) that
/// encoding needs: the pieces, the special ids, the model type, and the normaliser's settings and compiled
/// character map. Field numbers: ModelProto pieces 1, trainer_spec 2, normalizer_spec 3; SentencePiece piece 1,
/// score 2, type 3; TrainerSpec model_type 3, treat_whitespace_as_suffix 24, byte_fallback 35, unk_id 40, bos_id 41,
/// eos_id 42, pad_id 43; NormalizerSpec name 1, precompiled_charsmap 2, add_dummy_prefix 3,
/// remove_extra_whitespaces 4, escape_whitespaces 5. Defaults are the proto's.
/// </summary>
internal sealed class SentencePieceModel
{
    /// <summary>The largest model file read (T5's is 0.8 MB, the largest public Unigram models a few MB).</summary>
    public const long MaxFileBytes = 64L * 1024 * 1024;

    public required IReadOnlyList<SentencePiece> Pieces { get; init; }
    public int ModelType { get; init; } = 1;
    public int UnknownId { get; init; }
    public int BosId { get; init; } = 1;
    public int EosId { get; init; } = 2;
    public int PadId { get; init; } = -1;
    public bool ByteFallback { get; init; }
    public bool TreatWhitespaceAsSuffix { get; init; }
    public string NormalizerName { get; init; } = "";
    public byte[] PrecompiledCharsMap { get; init; } = [];
    public bool AddDummyPrefix { get; init; } = true;
    public bool RemoveExtraWhitespaces { get; init; } = true;
    public bool EscapeWhitespaces { get; init; } = true;

    /// <summary>Reads a <c>.model</c> file.</summary>
    /// <exception cref="InvalidDataException">The file is too large, not a model, or malformed; the message names it.</exception>
    public static SentencePieceModel Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"The SentencePiece model '{path}' does not exist.", path);
        if (info.Length > MaxFileBytes)
            throw new InvalidDataException($"'{path}' is {info.Length:N0} bytes, more than the {MaxFileBytes:N0} a SentencePiece model may have.");
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses a serialised <c>ModelProto</c>; <paramref name="source"/> names it in errors.</summary>
    public static SentencePieceModel Parse(ReadOnlySpan<byte> data, string source)
    {
        var pieces = new List<SentencePiece>();
        int modelType = 1, unk = 0, bos = 1, eos = 2, pad = -1;
        bool byteFallback = false, suffix = false, dummyPrefix = true, removeExtra = true, escape = true;
        string normalizerName = "";
        byte[] charsMap = [];

        var reader = new ProtobufReader(data, source);
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 1 && wire == 2) pieces.Add(ReadPiece(reader.ReadBytes(), source));
            else if (field == 2 && wire == 2)
            {
                var trainer = new ProtobufReader(reader.ReadBytes(), source);
                while (!trainer.AtEnd)
                {
                    var (f, w) = trainer.ReadTag();
                    switch (f, w)
                    {
                        case (3, 0): modelType = trainer.ReadInt32(); break;
                        case (24, 0): suffix = trainer.ReadVarint() != 0; break;
                        case (35, 0): byteFallback = trainer.ReadVarint() != 0; break;
                        case (40, 0): unk = trainer.ReadInt32(); break;
                        case (41, 0): bos = trainer.ReadInt32(); break;
                        case (42, 0): eos = trainer.ReadInt32(); break;
                        case (43, 0): pad = trainer.ReadInt32(); break;
                        default: trainer.Skip(w); break;
                    }
                }
            }
            else if (field == 3 && wire == 2)
            {
                var normalizer = new ProtobufReader(reader.ReadBytes(), source);
                while (!normalizer.AtEnd)
                {
                    var (f, w) = normalizer.ReadTag();
                    switch (f, w)
                    {
                        case (1, 2): normalizerName = Encoding.UTF8.GetString(normalizer.ReadBytes()); break;
                        case (2, 2): charsMap = normalizer.ReadBytes().ToArray(); break;
                        case (3, 0): dummyPrefix = normalizer.ReadVarint() != 0; break;
                        case (4, 0): removeExtra = normalizer.ReadVarint() != 0; break;
                        case (5, 0): escape = normalizer.ReadVarint() != 0; break;
                        default: normalizer.Skip(w); break;
                    }
                }
            }
            else reader.Skip(wire);
        }

        if (pieces.Count == 0) throw new InvalidDataException($"'{source}' has no pieces: it is not a SentencePiece model.");
        foreach (var (name, id) in new[] { ("unk_id", unk), ("eos_id", eos), ("bos_id", bos), ("pad_id", pad) })
            if (id >= pieces.Count || id < -1 || (name == "unk_id" && id < 0))
                throw new InvalidDataException($"'{source}' gives {name} {id}, outside its {pieces.Count} pieces.");
        return new SentencePieceModel
        {
            Pieces = pieces, ModelType = modelType, UnknownId = unk, BosId = bos, EosId = eos, PadId = pad,
            ByteFallback = byteFallback, TreatWhitespaceAsSuffix = suffix, NormalizerName = normalizerName,
            PrecompiledCharsMap = charsMap, AddDummyPrefix = dummyPrefix, RemoveExtraWhitespaces = removeExtra, EscapeWhitespaces = escape,
        };
    }

    private static SentencePiece ReadPiece(ReadOnlySpan<byte> data, string source)
    {
        string piece = "";
        float score = 0;
        int type = (int)SentencePieceType.Normal;
        var reader = new ProtobufReader(data, source);
        while (!reader.AtEnd)
        {
            var (f, w) = reader.ReadTag();
            switch (f, w)
            {
                case (1, 2): piece = Encoding.UTF8.GetString(reader.ReadBytes()); break;
                case (2, 5): score = reader.ReadFloat(); break;
                case (3, 0): type = reader.ReadInt32(); break;
                default: reader.Skip(w); break;
            }
        }
        if (type is < 1 or > 6) throw new InvalidDataException($"'{source}' has a piece '{piece}' of unknown type {type}.");
        return new SentencePiece(piece, score, (SentencePieceType)type);
    }
}
