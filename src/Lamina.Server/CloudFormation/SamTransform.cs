using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

internal sealed class SamTransform(string stackName, string region, string accountId, Dictionary<string, string> parameters)
{
    public const string Name = "AWS::Serverless-2016-10-31";

    public JsonObject Apply(JsonObject root) => throw CloudFormationException.Validation($"{stackName}{region}{accountId}{parameters.Count}{root.Count}");
}
