using System.Text.Json.Serialization;
using Lamina.Runtime;


await LambdaRuntime.RunAsync((Greeting greeting, ILambdaContext context) =>
{
    if (greeting.Name == "fail")
    {
        throw new ArgumentException("no greeting for 'fail'");
    }
    return new Reply($"Hello, {greeting.Name}!", context.FunctionName, context.AwsRequestId);
}, new SourceGeneratorLambdaJsonSerializer<ExeJsonContext>());

public sealed record Greeting(string Name);

public sealed record Reply(string Message, string FunctionName, string RequestId);

[JsonSerializable(typeof(Greeting))]
[JsonSerializable(typeof(Reply))]
public partial class ExeJsonContext : JsonSerializerContext;
