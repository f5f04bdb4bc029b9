using Lamina.Server.Functions;
using Lamina.Server.Hosting;

namespace Lamina.Tests.Functions;

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
