namespace MLNet.Diffusion;

/// <summary>
/// Whether the VAE decodes (and encodes) an image in overlapping tiles, so that memory stays bounded as the image
/// grows. Each tile is 64×64 latents (512×512 pixels) and overlaps its neighbours by 16 latents (128 pixels), where
/// the tiles are blended linearly; the result differs from a whole-image run only by what a tile cannot see past its
/// edge, which a VAE's receptive field makes small but not zero (its normalization and attention layers see the
/// whole tile rather than the whole image).
/// </summary>
/// <remarks>
/// A VAE whose ONNX graph fixes the latent height or width (an export for one size) runs only at that size: there
/// that size is the tile along that axis, so <see cref="Auto"/> and <see cref="On"/> tile every image larger than it,
/// and <see cref="Off"/> runs the whole image (which such a model refuses unless the sizes match).
/// </remarks>
public enum VaeTiling
{
    /// <summary>
    /// Tile images of more than 1024×1024 pixels (more than 128×128 = 16 384 latent pixels, by area), the largest
    /// size SDXL is trained at; smaller images are decoded whole, exactly as without tiling.
    /// </summary>
    Auto,

    /// <summary>Tile every image larger than one tile (512 pixels) along either axis.</summary>
    On,

    /// <summary>Never tile: the whole image in one VAE run, whose memory grows with the image's area.</summary>
    Off,
}
