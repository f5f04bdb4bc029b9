using System.Text;
using Lamina.Runtime.Hosting;
using Lamina.Runtime.Logging;
using Lamina.Runtime.RuntimeApi;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.DotNetRuntime;

public class LambdaContextTests
{
    private static readonly DateTimeOffset Now = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Context_Headers_AreExposed()
    {
        var context = CreateSut(new()
        {
            ["Lambda-Runtime-Aws-Request-Id"] = "rid",
            ["Lambda-Runtime-Invoked-Function-Arn"] = "arn:aws:lambda:us-east-1:000000000000:function:f:live",
            ["Lambda-Runtime-Trace-Id"] = "Root=1-x",
            ["Lambda-Runtime-Deadline-Ms"] = (Now.ToUnixTimeMilliseconds() + 2500).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Lambda-Runtime-Client-Context"] = """{"client":{"app_title":"t","installation_id":"i"},"custom":{"k":"v","n":1},"env":{"platform":"linux"}}""",
            ["Lambda-Runtime-Cognito-Identity"] = """{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}""",
        }, out var time);

        Assert.Equal("rid", context.AwsRequestId);
        Assert.EndsWith(":f:live", context.InvokedFunctionArn, StringComparison.Ordinal);
        Assert.Equal("Root=1-x", context.TraceId);
        Assert.Equal(("f", "$LATEST", 256), (context.FunctionName, context.FunctionVersion, context.MemoryLimitInMB));
        Assert.Equal(TimeSpan.FromMilliseconds(2500), context.RemainingTime);
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.Equal(TimeSpan.Zero, context.RemainingTime);
        Assert.Equal(("t", "i"), (context.ClientContext!.Client!.AppTitle, context.ClientContext.Client.InstallationId));
        Assert.Equal("v", context.ClientContext.Custom["k"]);
        Assert.Equal("1", context.ClientContext.Custom["n"]);
        Assert.Equal("linux", context.ClientContext.Environment["platform"]);
        Assert.Equal(("id", "pool"), (context.Identity!.IdentityId, context.Identity.IdentityPoolId));
    }

    [Fact]
    public void Context_WithoutOptionalHeaders_HasNullClientContextAndIdentity()
    {
        var context = CreateSut(new() { ["Lambda-Runtime-Client-Context"] = "not json" }, out _);

        Assert.Null(context.ClientContext);
        Assert.Null(context.Identity);
        Assert.Equal(TimeSpan.MaxValue, context.RemainingTime);
    }

    private static LambdaContext CreateSut(Dictionary<string, string> headers, out FakeTimeProvider time)
    {
        time = new FakeTimeProvider(Now);
        var environment = new FunctionEnvironment { FunctionName = "f", FunctionVersion = "$LATEST", MemoryLimitInMB = 256 };
        var request = new InvocationRequest(new Dictionary<string, string>(headers, StringComparer.OrdinalIgnoreCase), Encoding.UTF8.GetBytes("{}"));
        return new LambdaContext(request, environment, LambdaConsole.Logger, time);
    }
}
