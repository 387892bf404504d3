using System.Text;

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// T5's tokenizer: a SentencePiece Unigram model (Kudo, "Subword Regularization", ACL 2018) read from the folder's
/// <c>spiece.model</c>, or from its <c>tokenizer.json</c> when it has only that (<see cref="UnigramTokenizerJson"/>). The text is normalised as the model says (<see cref="SentencePieceNormalizer"/>), segmented into
/// the pieces of highest total log-probability (Viterbi), a run of unknown characters becomes one unknown id, and the
/// end-of-sequence id closes the sequence, as transformers' <c>T5Tokenizer</c> does (no start token).
/// </summary>
/// <remarks>
/// The segmentation follows <c>unigram::Model::EncodeOptimized</c> in SentencePiece's <c>unigram_model.cc</c>, with its
/// float arithmetic and tie order (a later candidate replaces an earlier one only when strictly better), so the ids
/// equal SentencePiece's: a character no piece covers scores the lowest piece score minus 10, and unused pieces are
/// never produced. Checked against SentencePiece's own ids (<c>Data/t5/make_t5_reference.py</c>).
/// </remarks>
internal sealed class T5Tokenizer
{
    /// <summary>The model file's name in a diffusers tokenizer folder.</summary>
    public const string ModelFileName = "spiece.model";

    private const float UnknownPenalty = 10f;
    private readonly SentencePieceModel _model;
    private readonly SentencePieceNormalizer _normalizer;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _pieces;
    private readonly int _maxPieceLength;
    private readonly float _minScore, _maxScore;

    public T5Tokenizer(SentencePieceModel model, string source)
    {
        if (model.ModelType != 1)
            throw new NotSupportedException($"'{source}' is a SentencePiece model of type {model.ModelType}; T5 tokenizers are Unigram (type 1).");
        if (model.ByteFallback)
            throw new NotSupportedException($"'{source}' falls back to byte pieces for unknown characters (byte_fallback); T5's tokenizers do not, and byte fallback is not supported.");
        if (model.EosId < 0) throw new InvalidDataException($"'{source}' has no end-of-sequence id (eos_id −1); T5 closes every sequence with one.");
        _model = model;
        _normalizer = new SentencePieceNormalizer(model, source);
        var pieces = new Dictionary<string, int>(StringComparer.Ordinal);
        _minScore = float.MaxValue;
        _maxScore = float.MinValue;
        for (int id = 0; id < model.Pieces.Count; id++)
        {
            var p = model.Pieces[id];
            if (p.Type is SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused && p.Piece.Length > 0)
            {
                pieces.TryAdd(p.Piece, id);
                _maxPieceLength = Math.Max(_maxPieceLength, p.Piece.Length);
            }
            if (p.Type == SentencePieceType.Normal)
            {
                _minScore = Math.Min(_minScore, p.Score);
                _maxScore = Math.Max(_maxScore, p.Score);
            }
        }
        _pieces = pieces.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>
    /// Loads a tokenizer folder: its <c>spiece.model</c> (SentencePiece's own file, preferred when both are there), else its
    /// <c>tokenizer.json</c> (Hugging Face tokenizers' Unigram form of the same model). Either gives the same ids.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has neither file.</exception>
    /// <exception cref="InvalidDataException">The file is malformed; the message names it (and, for JSON, the key).</exception>
    /// <exception cref="NotSupportedException">The file describes a tokenizer of another kind.</exception>
    public static T5Tokenizer Load(string tokenizerDirectory)
    {
        string path = Path.Combine(tokenizerDirectory, ModelFileName);
        if (File.Exists(path)) return new T5Tokenizer(SentencePieceModel.Load(path), path);
        string json = Path.Combine(tokenizerDirectory, UnigramTokenizerJson.FileName);
        if (File.Exists(json)) return new T5Tokenizer(UnigramTokenizerJson.Load(json), json);
        throw new FileNotFoundException(
            $"The T5 tokenizer folder '{tokenizerDirectory}' has neither {ModelFileName} (SentencePiece model) nor {UnigramTokenizerJson.FileName} (Hugging Face tokenizers); a diffusers export has one of them.", path);
    }

    /// <summary>The vocabulary size (ids are below it).</summary>
    public int VocabularySize => _model.Pieces.Count;

    /// <summary>The end-of-sequence id that closes every sequence.</summary>
    public int EosId => _model.EosId;

    /// <summary>The padding id (T5: 0).</summary>
    public int PadId => Math.Max(_model.PadId, 0);

    /// <summary>The ids of <paramref name="text"/> followed by the end-of-sequence id.</summary>
    public int[] Encode(string text)
    {
        var ids = Segment(_normalizer.Normalize(text));
        ids.Add(_model.EosId);
        return ids.ToArray();
    }

    /// <summary>
    /// The ids of <paramref name="text"/> cut and padded to <paramref name="maxLength"/> as diffusers asks transformers
    /// (<c>padding="max_length", truncation=True</c>): a long text keeps its first <c>maxLength − 1</c> ids and the
    /// end-of-sequence id; a short one is followed by the padding id.
    /// </summary>
    public int[] Encode(string text, int maxLength, out bool truncated)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        var result = new int[maxLength];
        truncated = Encode(text, result) > 0;
        return result;
    }

    /// <summary>
    /// Writes the ids of <paramref name="text"/> into all of <paramref name="destination"/> as <see cref="Encode(string, int, out bool)"/>
    /// does with <c>maxLength</c> = its length: the content ids, the end-of-sequence id, then the padding id; a text too
    /// long keeps its first <c>length − 1</c> ids and the end-of-sequence id.
    /// </summary>
    /// <returns>How many of the text's ids were dropped (0 when it fits).</returns>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is empty.</exception>
    public int Encode(string text, Span<int> destination)
    {
        if (destination.IsEmpty) throw new ArgumentException("At least one position is needed, for the end-of-sequence id.", nameof(destination));
        var ids = Encode(text);
        destination.Fill(PadId);
        if (ids.Length <= destination.Length)
        {
            ids.CopyTo(destination);
            return 0;
        }
        ids.AsSpan(0, destination.Length - 1).CopyTo(destination);
        destination[^1] = _model.EosId;
        return ids.Length - destination.Length;
    }

    /// <summary>The best segmentation of normalised text, as ids, with runs of unknown ids merged.</summary>
    private List<int> Segment(string normalized)
    {
        int size = normalized.Length;
        var ids = new List<int>();
        if (size == 0) return ids;
        var bestScore = new float[size + 1];
        var bestStart = new int[size + 1];
        var bestId = new int[size + 1];
        Array.Fill(bestStart, -1);
        float unknownScore = _minScore - UnknownPenalty;

        for (int start = 0; start < size; start += CharLength(normalized, start))
        {
            float scoreHere = bestScore[start];
            int charLength = CharLength(normalized, start);
            bool coversOneCharacter = false;
            for (int end = start + 1; end <= size && end - start <= _maxPieceLength; end++)
            {
                if (!_pieces.TryGetValue(normalized.AsSpan(start, end - start), out int id)) continue;
                var piece = _model.Pieces[id];
                if (piece.Type == SentencePieceType.Unused) continue;
                float candidate = piece.Type == SentencePieceType.UserDefined
                    ? (float)(Encoding.UTF8.GetByteCount(normalized.AsSpan(start, end - start)) * _maxScore - 0.1 + scoreHere)
                    : piece.Score + scoreHere;
                if (bestStart[end] == -1 || candidate > bestScore[end])
                {
                    bestScore[end] = candidate;
                    bestStart[end] = start;
                    bestId[end] = id;
                }
                if (end - start == charLength) coversOneCharacter = true;
            }
            if (!coversOneCharacter)
            {
                int end = start + charLength;
                float candidate = unknownScore + scoreHere;
                if (bestStart[end] == -1 || candidate > bestScore[end])
                {
                    bestScore[end] = candidate;
                    bestStart[end] = start;
                    bestId[end] = _model.UnknownId;
                }
            }
        }

        for (int end = size; end > 0; end = bestStart[end]) ids.Add(bestId[end]);
        ids.Reverse();
        // A run of unknown characters is one unknown piece (SentencePieceProcessor::PopulateSentencePieceText).
        int write = 0;
        for (int read = 0; read < ids.Count; read++)
            if (!(write > 0 && ids[read] == _model.UnknownId && ids[write - 1] == _model.UnknownId)) ids[write++] = ids[read];
        ids.RemoveRange(write, ids.Count - write);
        return ids;
    }

    private static int CharLength(string s, int index) => char.IsHighSurrogate(s[index]) && index + 1 < s.Length && char.IsLowSurrogate(s[index + 1]) ? 2 : 1;
}
