namespace Lamina.Server.EventBridge;

/// <summary>A rule's target as PutTargets takes it and ListTargetsByRule answers it (the members Lamina acts on).</summary>
internal sealed class TargetDto
{
    public string? Id { get; set; }
    public string? Arn { get; set; }
    public string? RoleArn { get; set; }
    public string? Input { get; set; }
    public string? InputPath { get; set; }
    public InputTransformerDto? InputTransformer { get; set; }
}

internal sealed class InputTransformerDto
{
    public Dictionary<string, string>? InputPathsMap { get; set; }
    public string? InputTemplate { get; set; }
}
