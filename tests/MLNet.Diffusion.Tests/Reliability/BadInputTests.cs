using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using Microsoft.ML.Data;
using MLNet.Diffusion.Imaging;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.ImageToImage;
using MLNet.Diffusion.Tests.Imaging;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 8, point 2: arbitrary prompts, images and numbers. Each is refused with a clear managed exception before
/// any model runs, or has a documented treatment that these tests pin down; nothing reaches native code malformed.
/// </summary>
public class BadInputTests(PipelineCache cache) : IClassFixture<PipelineCache>
{
    private const string Prompt = "a photo of a red cat";
    private static readonly GenerationOptions Quick = new() { Steps = 2, Scheduler = "euler" };

    // ---- prompts: documented treatments (CLIP's text cleaning), never a crash ---------------------------------

    /// <summary>Prompts that must encode exactly as another prompt: (input, equivalent).</summary>
    public static TheoryData<string, string> EquivalentPrompts => new()
    {
        { "", "" },
        { "   ", "" },                                   // whitespace only: the empty (unconditional) prompt
        { "\t\r\n \u00A0\u2003", "" },                  // every kind of whitespace
        { "red\u0000 cat", "red cat" },                   // control characters are dropped…
        { "red\u0007\u001B cat\u007F", "red cat" },
        { "red \u0085 cat", "red cat" },                  // …NEL is whitespace
        { "red   \n\n  cat", "red cat" },                // runs of whitespace are one space
        { "  RED Cat  ", "red cat" },                     // trimmed, lower-cased
        { "red \uD800 cat", "red \uFFFD cat" },           // a lone high surrogate becomes U+FFFD
        { "red \uDC00 dog", "red \uFFFD dog" },           // a lone low surrogate too (another word: xUnit names both rows "red � …")
        { "red cat\uD83D", "red cat\uFFFD" },             // a high surrogate cut off at the end
        { "caf\u0065\u0301", "caf\u00E9" },               // NFC: e + combining acute is é
    };

    [Theory]
    [MemberData(nameof(EquivalentPrompts))]
    public void OddPromptsEncodeAsTheirCleanedText(string prompt, string equivalent)
    {
        var pipeline = cache.Get();
        Assert.Equal(pipeline.EncodeText([equivalent]), pipeline.EncodeText([prompt]));
    }

    public static TheoryData<string> OddPrompts => new()
    {
        "\u202Eevil\u202C",                               // bidi overrides
        "zero\u200Bwidth\u200Djoiner\uFEFF",                // format characters
        "<|startoftext|><|endoftext|><|endoftext|>",         // special tokens typed in the prompt
        "🐱‍👤🏳️‍🌈 👨‍👩‍👧‍👦",                                 // emoji sequences (byte-level BPE)
        "\uFFFE\uFFFF\U0010FFFF",                           // non-characters
        string.Concat(Enumerable.Repeat("\uD800", 1000)),   // a thousand lone surrogates
        string.Concat(Enumerable.Range(0, 32).Select(c => (char)c)), // every C0 control character
        "'s't're've'm'll'd",                                 // CLIP's contractions alone
        new string('!', 5000),                               // one symbol run
    };

    [Theory]
    [MemberData(nameof(OddPrompts))]
    public void OddPromptsGenerateDeterministically(string prompt)
    {
        var pipeline = cache.Get();
        using var a = pipeline.Generate(prompt, 1, Quick).Image;
        using var b = pipeline.Generate(prompt, 1, Quick).Image;
        Assert.Equal(a.Pixels.ToArray(), b.Pixels.ToArray());
    }

    [Fact]
    public void AHundredKilobytePromptIsCutQuicklyAtTheChunkLimit()
    {
        var pipeline = cache.Get();
        string huge = string.Concat(Enumerable.Repeat("red cat ", 100 * 1024 / 8)); // 100 KB
        // Long prompts are encoded in chunks of 75 tokens, at most PromptChunker.MaxChunks of them.
        string firstChunks = string.Join(' ', Enumerable.Repeat("red cat", MLNet.Diffusion.Tokenization.PromptChunker.MaxChunks * 75 / 2));
        pipeline.EncodeText([huge]); // warm-up
        var clock = Stopwatch.StartNew();
        var embedding = pipeline.EncodeText([huge]);
        clock.Stop();
        Assert.Equal(pipeline.EncodeText([firstChunks]), embedding);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"100 KB prompt took {clock.Elapsed}");
        // Ten megabytes of one unbroken word too (no spaces to split on).
        var word = pipeline.EncodeText([new string('a', 10 << 20)]);
        Assert.Equal(pipeline.EncodeText([new string('a', 5 << 20)]), word);
    }

    [Fact]
    public void NullPromptsAreRefusedAndANullNegativePromptIsEmpty()
    {
        var pipeline = cache.Get();
        long before = pipeline.UNet.RunCount;
        var e = Assert.Throws<ArgumentNullException>(() => pipeline.Generate([new ImagePrompt(Prompt, 1), new ImagePrompt(null!, 2)], Quick));
        Assert.Contains("The prompt of image 2 is null", e.Message); // images are counted from 1, as users count them
        Assert.Throws<ArgumentNullException>(() => pipeline.Generate([new ImagePrompt(Prompt, 1), null!], Quick));
        Assert.Equal(0, pipeline.UNet.RunCount - before);
        var withNull = pipeline.Generate([new ImagePrompt(Prompt, 4) { NegativePrompt = null! }], Quick)[0];
        var withEmpty = pipeline.Generate([new ImagePrompt(Prompt, 4)], Quick)[0];
        Assert.Equal(withEmpty.Latents, withNull.Latents);
        withNull.Image.Dispose();
        withEmpty.Image.Dispose();
    }

    // ---- numbers -------------------------------------------------------------------------------------------

    public static TheoryData<string, Func<GenerationOptions>, string> BadOptions => new()
    {
        { "steps 0", () => new() { Steps = 0 }, "Steps" },
        { "steps -1", () => new() { Steps = -1 }, "Steps" },
        { "steps 1001", () => new() { Steps = 1001 }, "Steps" },
        { "steps max", () => new() { Steps = int.MaxValue }, "Steps" },
        { "guidance NaN", () => new() { GuidanceScale = float.NaN }, "GuidanceScale" },
        { "guidance +inf", () => new() { GuidanceScale = float.PositiveInfinity }, "GuidanceScale" },
        { "guidance -inf", () => new() { GuidanceScale = float.NegativeInfinity }, "GuidanceScale" },
        { "eta NaN", () => new() { Eta = float.NaN }, "Eta" },
        { "eta -0.1", () => new() { Eta = -0.1f }, "Eta" },
        { "eta 1.5", () => new() { Eta = 1.5f }, "Eta" },
        { "width 0", () => new() { Width = 0 }, "a multiple of 8" },
        { "width -8", () => new() { Width = -8 }, "a multiple of 8" },
        { "width 7", () => new() { Width = 7 }, "a multiple of 8" },
        { "width 100", () => new() { Width = 100 }, "a multiple of 8" },
        { "width 4104", () => new() { Width = 4104 }, "4096" },
        { "width min", () => new() { Width = int.MinValue }, "a multiple of 8" },
        { "height max", () => new() { Height = int.MaxValue }, "a multiple of 8" },
        { "height -4096", () => new() { Height = -4096 }, "a multiple of 8" },
        { "scheduler unknown", () => new() { Scheduler = "warp-drive" }, "warp-drive" },
        { "scheduler NUL", () => new() { Scheduler = "euler\0" }, "Unknown scheduler" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void OutOfRangeSettingsAreRefusedBeforeAnyModelRuns(string name, Func<GenerationOptions> options, string messageHas)
    {
        var pipeline = cache.Get();
        long before = pipeline.UNet.RunCount;
        var e = Assert.ThrowsAny<ArgumentException>(() => pipeline.Generate(Prompt, 1, options()));
        Assert.True(e.Message.Contains(messageHas, StringComparison.Ordinal), $"{name}: {e.Message}");
        Assert.Equal(0, pipeline.UNet.RunCount - before);
    }

    public static TheoryData<float> BadStrengths => [float.NaN, -0.01f, 1.01f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue];

    [Theory]
    [MemberData(nameof(BadStrengths))]
    public void OutOfRangeStrengthIsRefused(float strength)
    {
        var pipeline = cache.Get();
        using var init = ImageToImageTestKit.BlockImage(64, 64);
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitImage = init, Strength = strength }], Quick));
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate([new ImagePrompt(Prompt) { GuidanceScale = strength is float.NaN ? float.NaN : float.PositiveInfinity }], Quick));
    }

    [Fact]
    public void AnySeedIsValidAndDeterministic()
    {
        var pipeline = cache.Get();
        var options = new GenerationOptions { Steps = 2, Scheduler = "ddim" };
        var seen = new List<byte[]>();
        foreach (long seed in new[] { long.MinValue, -1L, 0L, 1L, long.MaxValue })
        {
            using var a = pipeline.Generate(Prompt, seed, options).Image;
            using var b = pipeline.Generate(Prompt, seed, options).Image;
            Assert.Equal(a.Pixels.ToArray(), b.Pixels.ToArray());
            seen.Add(a.Pixels.ToArray());
        }
        Assert.Equal(seen.Count, seen.Select(Convert.ToHexString).Distinct().Count());
    }

    [Fact]
    public void GuidanceAtOrBelowOneTurnsGuidanceOff()
    {
        // Documented: any finite guidance scale is accepted; at 1 or below the UNet runs once per image, unguided.
        var pipeline = cache.Get();
        var one = pipeline.Generate(Prompt, 3, new GenerationOptions { Steps = 2, GuidanceScale = 1 });
        var negative = pipeline.Generate(Prompt, 3, new GenerationOptions { Steps = 2, GuidanceScale = -5 });
        Assert.Equal(one.Latents, negative.Latents);
        one.Image.Dispose();
        negative.Image.Dispose();
    }

    [Fact]
    public void StageMethodsRefuseMalformedArguments()
    {
        var pipeline = cache.Get();
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Decode([], 1, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Decode(new float[4], 1, 1, 1000));
        Assert.Throws<ArgumentException>(() => pipeline.Decode(new float[4 * 8 * 8 - 1], 1, 8, 8));
        Assert.Throws<ArgumentException>(() => pipeline.Decode(new float[4 * 8 * 8], 0, 8, 8));
        Assert.Throws<ArgumentException>(() => pipeline.Decode(new float[4 * 8 * 8], int.MaxValue, 8, 8));
        var cond = pipeline.EncodeText([Prompt]);
        Assert.Throws<ArgumentException>(() => pipeline.Denoise(cond.AsSpan(1), default, [1L], [1f], Quick));
        Assert.Throws<ArgumentException>(() => pipeline.Denoise(cond, cond.AsSpan(1), [1L], [7.5f], Quick));
        Assert.Throws<ArgumentException>(() => pipeline.Denoise(cond, default, [1L, 2L], [1f], Quick));
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Denoise(cond, default, [1L], [1f], new GenerationOptions { Width = 60, Height = 64, Steps = 2, Scheduler = "euler" }));
        Assert.Empty(pipeline.Generate([], Quick));
    }

    // ---- images ---------------------------------------------------------------------------------------------

    [Fact]
    public void DisposedOrHugeInitImagesAndMasksAreRefusedBeforeAnyModelRuns()
    {
        var pipeline = cache.Get();
        long before = pipeline.UNet.RunCount;
        var disposed = ImageToImageTestKit.BlockImage(64, 64);
        disposed.Dispose();
        var e = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitImage = disposed }], Quick));
        Assert.Contains("Image 0: the InitImage cannot be read", e.Message);
        using var init = ImageToImageTestKit.BlockImage(64, 64);
        var m = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt), new ImagePrompt(Prompt) { InitImage = init, Mask = disposed }], Quick));
        Assert.Contains("Image 1: the Mask cannot be read", m.Message);
        Assert.Throws<ArgumentException>(() => pipeline.EncodeImage(disposed, 64, 64));

        // One pixel over the limit: refused before anything proportional to it is allocated (the image itself is
        // the caller's 256 MiB).
        using var huge = MLImage.CreateFromPixels(1, (int)ImageLoader.MaxPixels + 1, MLPixelFormat.Rgba32, new byte[4 * (ImageLoader.MaxPixels + 1)]);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var h = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitImage = huge }], Quick));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 1 << 20, "allocated in proportion to the image");
        Assert.Contains("67108865 pixels", h.Message);
        Assert.Contains("8192×8192", h.Message);
        Assert.Throws<ArgumentException>(() => pipeline.EncodeImage(huge, 64, 64));
        Assert.Equal(0, pipeline.UNet.RunCount - before);
    }

    [Fact]
    public void TinyAndOddlyShapedInitImagesAreStretched()
    {
        // Documented: any size from 1×1 up to the limit is stretched to the generation size.
        var pipeline = cache.Get();
        foreach (var (w, h) in new[] { (1, 1), (1, 300), (300, 1), (63, 65) })
        {
            using var image = ImageToImageTestKit.BlockImage(w, h);
            using var mask = ImageToImageTestKit.MaskImage(w, h, (x, _) => x % 2 == 0);
            var result = pipeline.Generate([new ImagePrompt(Prompt, 1) { InitImage = image, Mask = mask, Strength = 0.5f }], Quick)[0];
            Assert.Equal(64, result.Image.Width);
            Assert.True(NonFiniteLatentsException.AllFinite(result.Latents));
            result.Image.Dispose();
        }
    }

    // ---- encoded images from files and streams ----------------------------------------------------------------

    public static TheoryData<string, byte[], string> BadEncodedImages => new()
    {
        { "empty", [], "empty" },
        { "text", "hello, this is not an image"u8.ToArray(), "not a PNG, JPEG, GIF, BMP or WebP" },
        { "pdf", "%PDF-1.7\n%âãÏÓ\n1 0 obj"u8.ToArray(), "not a PNG" },
        { "zip", [0x50, 0x4B, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00], "not a PNG" },
        { "png signature only", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "cut short" },
        { "png zero width", Png(0, 16), "no pixels" },
        { "png zero height", Png(16, 0), "no pixels" },
        { "png 100000 square", Png(100_000, 100_000), "at most 16777216 pixels (4096×4096)" },
        { "png 4 billion wide", Png(uint.MaxValue, 1), "at most 16777216" },
        { "png header only", Png(16, 16)[..33], "truncated PNG" },
        { "png truncated", Png(16, 16)[..45], "truncated PNG" },
        { "png without IEND", Png(16, 16)[..^12], "truncated PNG" },
        { "png corrupt data", Corrupt(Png(16, 16)), "CRC of its IDAT chunk" },
        { "gif 65535 square", [.. "GIF89a"u8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0], "at most" },
        { "bmp negative height huge", Bmp(60_000, -60_000), "at most" },
        { "bmp cut short", [.. "BM"u8, 0, 0], "cut short" },
        { "jpeg without frame", [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xD9], "without a frame header" },
        { "jpeg cut in a segment", [0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 0x00], "cut short" },
        { "jpeg 65535 square", [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x03], "at most" },
        { "webp vp8x huge", [.. "RIFF"u8, 0, 0, 0, 0, .. "WEBPVP8X"u8, 10, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x3F, 0], "at most" },
    };

    [Theory]
    [MemberData(nameof(BadEncodedImages))]
    public void BadEncodedImagesAreRefusedBeforeDecoding(string name, byte[] bytes, string messageHas)
    {
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => ImageLoader.Load(bytes, name));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 4 << 20, $"{name}: allocated too much");
        Assert.Contains(name, e.Message);
        Assert.True(e.Message.Contains(messageHas, StringComparison.Ordinal), $"{name}: {e.Message}");
    }

    [Fact]
    public void GoodEncodedImagesLoadFromFilesStreamsAndBytes()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-images-");
        try
        {
            using var source = ImageToImageTestKit.BlockImage(40, 24);
            foreach (var ext in new[] { "png", "jpg", "webp" })
            {
                string path = Path.Combine(dir.FullName, "image." + ext);
                source.Save(path);
                using var stream = File.OpenRead(path);
                Assert.Equal((ext == "jpg" ? "jpeg" : ext, 40L, 24L), ToTuple(ImageLoader.ReadHeader(stream, path)));
                using var fromFile = ImageLoader.Load(path);
                using var fromBytes = ImageLoader.Load(File.ReadAllBytes(path));
                using var fromPipe = ImageLoader.Load(new NonSeekable(File.ReadAllBytes(path)));
                Assert.Equal((40, 24), (fromFile.Width, fromFile.Height));
                Assert.Equal(fromFile.Pixels.ToArray(), fromBytes.Pixels.ToArray());
                Assert.Equal(fromFile.Pixels.ToArray(), fromPipe.Pixels.ToArray());
                // Cut in half: refused by its structure (see Imaging/ImageStructureTests for cuts inside larger images' pixel data).
                var half = File.ReadAllBytes(path)[..(int)(new FileInfo(path).Length / 2)];
                Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => ImageLoader.Load(half, "half." + ext)).Message);
            }
            Assert.Throws<FileNotFoundException>(() => ImageLoader.Load(Path.Combine(dir.FullName, "missing.png")));
        }
        finally { dir.Delete(true); }
    }

    private static (string, long, long) ToTuple(ImageHeader h) => (h.Format, h.Width, h.Height);

    /// <summary>A PNG of the given declared size: signature, IHDR, one IDAT of zeros for a small image, IEND.</summary>
    private static byte[] Png(uint width, uint height)
    {
        var ms = new MemoryStream();
        ms.Write(EncodedImages.PngSignature);
        EncodedImages.Chunk(ms, "IHDR", EncodedImages.Ihdr(width, height, 8, 2)); // 8-bit RGB
        if (width is > 0 and <= 64 && height is > 0 and <= 64)
            EncodedImages.Chunk(ms, "IDAT", EncodedImages.Zlib(new byte[height * (1 + 3 * width)]));
        EncodedImages.Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    private static byte[] Corrupt(byte[] png)
    {
        var copy = (byte[])png.Clone();
        for (int i = 41; i < copy.Length - 16; i++) copy[i] ^= 0x5A;
        return copy;
    }

    private static byte[] Bmp(int width, int height)
    {
        var b = new byte[54];
        b[0] = (byte)'B'; b[1] = (byte)'M';
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(18), width);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(22), height);
        return b;
    }

    /// <summary>A read-only stream that cannot seek (a network or pipe stream).</summary>
    private sealed class NonSeekable(byte[] data) : Stream
    {
        private readonly MemoryStream _inner = new(data);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
