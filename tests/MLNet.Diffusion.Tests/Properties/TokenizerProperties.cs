using CsCheck;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Tests.Properties;

/// <summary>Properties of the CLIP tokenizer over arbitrary UTF-16 text (lone surrogates and control characters included).</summary>
public sealed class TokenizerProperties : IClassFixture<TokenizerProperties.Folder>
{
    private readonly ClipTokenizer _tokenizer;

    public TokenizerProperties(Folder folder) => _tokenizer = folder.Tokenizer;

    /// <summary>Any UTF-16 sequence: full char range, so unpaired surrogates and controls occur often.</summary>
    private static readonly Gen<string> AnyText = Gen.Char.Array[0, 300].Select(chars => new string(chars));

    /// <summary>Text made of words the vocabulary merges, so long prompts (truncation) occur.</summary>
    private static readonly Gen<string> Words = Picks.OneOf(TestTokenizer.Words.ToArray()).Array[0, 120].Select(w => string.Join(' ', w));

    [Fact]
    public void EncodeNeverThrowsAndAlwaysGives77IdsFramedByBosEosAndPadding()
    {
        Gen.OneOf(AnyText, Words).Sample(text =>
        {
            var ids = _tokenizer.Encode(text);
            Assert.Equal(_tokenizer.MaxLength, ids.Length);
            Assert.Equal(_tokenizer.BosId, ids[0]);
            int eos = Array.IndexOf(ids, _tokenizer.EosId, 1);
            Assert.InRange(eos, 1, ids.Length - 1);
            // After the end token, only padding (here the pad token is the end token itself).
            for (int i = eos + 1; i < ids.Length; i++) Assert.Equal(_tokenizer.PadId, ids[i]);
            // Content ids are never the special tokens.
            for (int i = 1; i < eos; i++) Assert.NotEqual(_tokenizer.BosId, ids[i]);
        }, iter: 400);
    }

    [Fact]
    public void SpanEncodeAgreesWithArrayEncodeAndReportsTruncation()
    {
        Words.Sample(text =>
        {
            Span<int> span = stackalloc int[_tokenizer.MaxLength];
            int content = _tokenizer.Encode(text, span, out bool truncated);
            Assert.Equal(_tokenizer.Encode(text), span.ToArray());
            Assert.Equal(content > _tokenizer.MaxLength - 2, truncated);
            // The count stops one past the kept tokens, so huge prompts cost no more than short ones.
            Assert.Equal(Math.Min(_tokenizer.EncodeContent(text).Count, _tokenizer.MaxLength - 1), content);
            Assert.Equal(_tokenizer.EncodeContent(text).Take(_tokenizer.MaxLength - 2), span[1..(1 + Math.Min(content, _tokenizer.MaxLength - 2))].ToArray());
        }, iter: 200);
    }

    [Fact]
    public void WhitespaceAndCaseDoNotChangeTheIds()
    {
        Words.Sample(text =>
        {
            string noisy = "  " + text.ToUpperInvariant().Replace(" ", " \t\n ") + "\r\n";
            Assert.Equal(_tokenizer.Encode(text), _tokenizer.Encode(noisy));
        }, iter: 200);
    }

    public sealed class Folder : IDisposable
    {
        private readonly TempModelFolder _folder = TestModelFactory.CreateTemp();
        public Folder() => Tokenizer = ClipTokenizer.Load(Path.Combine(_folder.Path, "tokenizer"));
        internal ClipTokenizer Tokenizer { get; }
        public void Dispose() => _folder.Dispose();
    }
}
