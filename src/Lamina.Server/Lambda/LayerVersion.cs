using Lamina.Server.Hosting;

namespace Lamina.Server.Lambda;

/// <summary>
/// One published version of a layer, immutable (a layer version never changes; it can only be deleted). Its zip
/// lives in the code store under <see cref="CodeSha256"/>, like function code.
/// </summary>
internal sealed record LayerVersion
{
    public required string LayerName { get; init; }

    /// <summary>1, 2, … per layer name, never reused.</summary>
    public required long Version { get; init; }

    public string Description { get; init; } = "";

    public string? LicenseInfo { get; init; }

    /// <summary>As given at publish time (null when not given); only used to filter lists.</summary>
    public IReadOnlyList<string>? CompatibleRuntimes { get; init; }

    public IReadOnlyList<string>? CompatibleArchitectures { get; init; }

    /// <summary>Base64 SHA-256 of the zip.</summary>
    public required string CodeSha256 { get; init; }

    /// <summary>Hex SHA-256 of the zip: the key of its zip and extracted tree in the code store (not stored).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string CodeHashHex => Convert.ToHexStringLower(Convert.FromBase64String(CodeSha256));

    /// <summary>Bytes of the zip.</summary>
    public required long CodeSize { get; init; }

    public required DateTimeOffset CreatedDate { get; init; }

    /// <summary>True if the version declares <paramref name="runtime"/> and <paramref name="architecture"/> (null: no filter).</summary>
    public bool Matches(string? runtime, string? architecture) =>
        (runtime is null || (CompatibleRuntimes?.Contains(runtime, StringComparer.Ordinal) ?? false)) &&
        (architecture is null || (CompatibleArchitectures?.Contains(architecture, StringComparer.Ordinal) ?? false));
}

/// <summary>Layer ARNs (LAMBDA.md §4): <c>arn:aws:lambda:&lt;region&gt;:&lt;account&gt;:layer:&lt;name&gt;[:&lt;version&gt;]</c>.</summary>
internal static class LayerArns
{
    public static string LayerArn(this LaminaOptions options, string name) =>
        $"arn:aws:lambda:{options.Region}:{options.AccountId}:layer:{name}";

    public static string LayerVersionArn(this LaminaOptions options, string name, long version) =>
        $"{options.LayerArn(name)}:{version}";
}
