using System.Buffers.Binary;
using System.Text;

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// SentencePiece's normaliser: the model's compiled character map (for T5, <c>nmt_nfkc</c>: NFKC plus the removal of
/// control characters and the folding of whitespace) applied by longest match, then its whitespace rules — leading,
/// trailing and repeated spaces dropped, a space prefixed, spaces written as <c>▁</c> (U+2581).
/// </summary>
/// <remarks>
/// Follows <c>Normalizer::Normalize</c> and <c>NormalizePrefix</c> in SentencePiece's <c>normalizer.cc</c>. The compiled
/// map is a little-endian <c>uint32</c> trie size, a darts-clone double-array trie over UTF-8 byte strings whose values
/// are offsets into the null-terminated replacement strings that follow it. Input with no rule is copied a
/// character at a time.
/// </remarks>
internal sealed class SentencePieceNormalizer
{
    /// <summary>The symbol SentencePiece writes for a space.</summary>
    public const string SpaceSymbol = "\u2581";

    private static readonly byte[] ReplacementCharacter = [0xEF, 0xBF, 0xBD];
    private readonly uint[] _trie;
    private readonly byte[] _replacements;
    private readonly byte[][] _userDefined;
    private readonly bool _addDummyPrefix, _removeExtraWhitespaces, _escapeWhitespaces;

    public SentencePieceNormalizer(SentencePieceModel model, string source)
    {
        if (model.TreatWhitespaceAsSuffix)
            throw new NotSupportedException($"'{source}' treats whitespace as a suffix (treat_whitespace_as_suffix); only prefix-space models such as T5's are supported.");
        (_trie, _replacements) = ReadCharsMap(model.PrecompiledCharsMap, source);
        _userDefined = model.Pieces.Where(p => p.Type == SentencePieceType.UserDefined).Select(p => Encoding.UTF8.GetBytes(p.Piece)).ToArray();
        _addDummyPrefix = model.AddDummyPrefix;
        _removeExtraWhitespaces = model.RemoveExtraWhitespaces;
        _escapeWhitespaces = model.EscapeWhitespaces;
    }

    /// <summary>Normalises <paramref name="text"/> as SentencePiece does before it segments it.</summary>
    public string Normalize(string text)
    {
        ReadOnlySpan<byte> input = Encoding.UTF8.GetBytes(text);
        var output = new List<byte>(input.Length + 8);

        if (_removeExtraWhitespaces)
        {
            while (!input.IsEmpty)
            {
                var replacement = NormalizePrefix(input, out int consumed);
                if (!replacement.SequenceEqual(" "u8)) break;
                input = input[consumed..];
            }
        }
        if (input.IsEmpty) return "";
        if (_addDummyPrefix) Append(output, " "u8);

        bool previousWasSpace = _removeExtraWhitespaces;
        while (!input.IsEmpty)
        {
            var replacement = NormalizePrefix(input, out int consumed);
            while (previousWasSpace && !replacement.IsEmpty && replacement[0] == (byte)' ') replacement = replacement[1..];
            if (!replacement.IsEmpty)
            {
                Append(output, replacement);
                previousWasSpace = replacement[^1] == (byte)' ';
            }
            input = input[consumed..];
        }

        var bytes = output.ToArray();
        string result = Encoding.UTF8.GetString(bytes);
        if (_escapeWhitespaces) result = result.Replace(" ", SpaceSymbol, StringComparison.Ordinal);
        if (_removeExtraWhitespaces)
        {
            string space = _escapeWhitespaces ? SpaceSymbol : " ";
            while (result.EndsWith(space, StringComparison.Ordinal)) result = result[..^space.Length];
        }
        return result;

        void Append(List<byte> list, ReadOnlySpan<byte> bytes)
        {
            foreach (byte b in bytes) list.Add(b);
        }
    }

    /// <summary>The replacement for the longest rule matching the start of <paramref name="input"/>, and the bytes it consumes.</summary>
    private ReadOnlySpan<byte> NormalizePrefix(ReadOnlySpan<byte> input, out int consumed)
    {
        // A user-defined piece is kept as it is (SentencePiece's prefix matcher runs before the character map).
        int userLength = 0;
        foreach (var piece in _userDefined)
            if (piece.Length > userLength && input.StartsWith(piece)) userLength = piece.Length;
        if (userLength > 0)
        {
            consumed = userLength;
            return input[..userLength];
        }

        var (length, value) = LongestPrefix(input);
        if (length > 0)
        {
            var rest = _replacements.AsSpan(value);
            int end = rest.IndexOf((byte)0);
            consumed = length;
            return end < 0 ? rest : rest[..end];
        }
        // No rule: one character as it is, or U+FFFD for one malformed byte.
        if (Rune.DecodeFromUtf8(input, out _, out int charLength) != System.Buffers.OperationStatus.Done)
        {
            consumed = 1;
            return ReplacementCharacter;
        }
        consumed = charLength;
        return input[..charLength];
    }

    /// <summary>darts-clone's <c>commonPrefixSearch</c>, keeping the longest match.</summary>
    private (int Length, int Value) LongestPrefix(ReadOnlySpan<byte> key)
    {
        if (_trie.Length == 0) return (0, 0);
        int bestLength = 0, bestValue = 0;
        uint nodePos = 0;
        uint unit = _trie[0];
        nodePos ^= Offset(unit);
        for (int i = 0; i < key.Length; i++)
        {
            nodePos ^= key[i];
            if (nodePos >= _trie.Length) break;
            unit = _trie[nodePos];
            if (Label(unit) != key[i]) break;
            nodePos ^= Offset(unit);
            if (nodePos >= _trie.Length) break;
            if (HasLeaf(unit))
            {
                bestLength = i + 1;
                bestValue = (int)(_trie[nodePos] & 0x7FFFFFFFu);
            }
        }
        if (bestLength > 0 && bestValue >= _replacements.Length) bestLength = 0; // a value outside the strings: no rule
        return (bestLength, bestValue);
    }

    private static bool HasLeaf(uint unit) => ((unit >> 8) & 1) == 1;
    private static uint Label(uint unit) => unit & ((1u << 31) | 0xFF);
    private static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    private static (uint[] Trie, byte[] Replacements) ReadCharsMap(byte[] blob, string source)
    {
        if (blob.Length == 0) return ([], []);
        if (blob.Length < 4) throw new InvalidDataException($"'{source}' has a compiled character map of {blob.Length} bytes, too short for its header.");
        uint trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieBytes % 4 != 0 || trieBytes > blob.Length - 4)
            throw new InvalidDataException($"'{source}' has a compiled character map whose trie size ({trieBytes} bytes) does not fit its {blob.Length} bytes.");
        var trie = new uint[trieBytes / 4];
        for (int i = 0; i < trie.Length; i++) trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.AsSpan(4 + 4 * i));
        return (trie, blob[(4 + (int)trieBytes)..]);
    }
}
