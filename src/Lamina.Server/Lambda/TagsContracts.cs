namespace Lamina.Server.Lambda;

// Wire shapes of the tagging operations. Registered in LaminaJsonContext.cs.

internal sealed class TagResourceRequest
{
    public Dictionary<string, string>? Tags { get; set; }
}

internal sealed class ListTagsResponse
{
    public Dictionary<string, string> Tags { get; set; } = new(StringComparer.Ordinal);
}
