using Lamina.Server.Hosting;
using Lamina.Server.Lambda;

namespace Lamina.Tests.Lambda;

public sealed class FunctionReferenceTests
{
    private static readonly LaminaOptions Options = new();

    [Theory]
    [InlineData("my-fn", null, "my-fn", null)]
    [InlineData("my-fn:$LATEST", null, "my-fn", "$LATEST")]
    [InlineData("my-fn:live", null, "my-fn", "live")]
    [InlineData("my-fn", "$LATEST", "my-fn", "$LATEST")]
    [InlineData("000000000000:function:my-fn", null, "my-fn", null)]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:my-fn", null, "my-fn", null)]
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:my-fn:7", "7", "my-fn", "7")]
    public void TryParse_ValidForms(string raw, string? qualifier, string name, string? expectedQualifier)
    {
        Assert.True(FunctionReference.TryParse(raw, qualifier, Options, out var reference, out var error));
        Assert.Null(error);
        Assert.Equal(name, reference.Name);
        Assert.Equal(expectedQualifier, reference.Qualifier);
    }

    [Theory]
    // A caller of another account names its own functions; their registry keys carry the account.
    [InlineData("my-fn", "111111111111", false, "111111111111:my-fn", "111111111111")]
    [InlineData("arn:aws:lambda:us-east-1:111111111111:function:my-fn", "111111111111", false, "111111111111:my-fn", "111111111111")]
    // The server's own account keeps bare names, also when another account's caller invokes across accounts.
    [InlineData("arn:aws:lambda:us-east-1:000000000000:function:my-fn", "111111111111", true, "my-fn", "000000000000")]
    [InlineData("arn:aws:lambda:us-east-1:222222222222:function:my-fn", "111111111111", true, "222222222222:my-fn", "222222222222")]
    public void TryParse_AccountsAreTenants(string raw, string account, bool crossAccount, string key, string owner)
    {
        Assert.True(FunctionReference.TryParse(raw, null, Options, account, out var reference, out _, crossAccount));
        Assert.Equal(key, reference.Name);
        Assert.Equal((owner, "my-fn"), Options.SplitFunctionKey(reference.Name));
        Assert.Equal($"arn:aws:lambda:us-east-1:{owner}:function:my-fn", Options.FunctionArn(reference.Name));
    }

    [Fact]
    public void TryParse_AnotherAccountsFunction_IsNotThereWithoutCrossAccount()
    {
        Assert.False(FunctionReference.TryParse("arn:aws:lambda:us-east-1:000000000000:function:my-fn", null, Options, "111111111111", out _, out var error));
        Assert.Equal("ResourceNotFoundException", error!.Code);
    }

    [Theory]
    [InlineData("", "ValidationException")]
    [InlineData("has space", "ValidationException")]
    [InlineData("a/b", "ValidationException")]
    [InlineData("a%2Fb", "ValidationException")]
    [InlineData("..", "ValidationException")]
    [InlineData("$LATEST", "ValidationException")]
    [InlineData("na\u202Eme", "ValidationException")]
    [InlineData("arn:aws:lambda:us-east-1:111111111111:function:my-fn", "ResourceNotFoundException")]
    [InlineData("arn:aws:lambda:eu-west-1:000000000000:function:my-fn", "ResourceNotFoundException")]
    public void TryParse_Invalid_AwsError(string raw, string code)
    {
        Assert.False(FunctionReference.TryParse(raw, null, Options, out _, out var error));
        Assert.Equal(code, error!.Code);
    }

    [Fact]
    public void TryParse_NameOver64_InvalidParameter()
    {
        Assert.False(FunctionReference.TryParse(new string('a', 65), null, Options, out _, out var error));
        Assert.Equal("InvalidParameterValueException", error!.Code);
        Assert.True(FunctionReference.TryParse(new string('a', 64), null, Options, out _, out _));
    }

    [Fact]
    public void TryParse_ConflictingQualifiers_Refused()
    {
        Assert.False(FunctionReference.TryParse("my-fn:1", "2", Options, out _, out var error));
        Assert.Equal("InvalidParameterValueException", error!.Code);
    }
}
