using System.Text.Json.Nodes;
using Lamina.Server.Protocols;

namespace Lamina.Server.CloudFormation;

/// <summary>Reads a template, JSON or YAML with CloudFormation's short forms, into one JSON tree.</summary>
internal static class TemplateReader
{
    /// <summary>The template as a JSON object; a <see cref="CloudFormationException"/> (ValidationError) when it is not one.</summary>
    public static JsonObject Read(string text)
    {
        try
        {
            return YamlJson.ReadObject(text, cloudFormationTags: true);
        }
        catch (FormatException e)
        {
            throw CloudFormationException.Validation("Template format error: " + e.Message);
        }
    }
}
