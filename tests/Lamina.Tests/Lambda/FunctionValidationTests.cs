using Lamina.Server.Hosting;
using Lamina.Server.Lambda;

namespace Lamina.Tests.Lambda;

public sealed class FunctionValidationTests
{
    private static readonly LaminaOptions Options = new();

    private static CreateFunctionRequest ValidCreate() => new()
    {
        FunctionName = "my-fn",
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/lambda-role",
        Handler = "app.handler",
        Code = new FunctionCodeDto { ZipFile = [1, 2, 3] },
    };

    private static FunctionConfig Current() => new()
    {
        Name = "my-fn", Runtime = "python3.12", Role = "arn:aws:iam::000000000000:role/r", Handler = "app.handler",
        CodeSha256 = "", CodeSize = 0, LastModified = default, RevisionId = "r1",
        EnvironmentVariables = new Dictionary<string, string> { ["KEEP"] = "1" },
    };

    private static string? CreateError(Action<CreateFunctionRequest> change)
    {
        var request = ValidCreate();
        change(request);
        return FunctionValidation.ValidateCreate(request, Options, Options.AccountId, out _, out _)?.Message;
    }

    [Fact]
    public void ValidateCreate_Minimal_DefaultsAsLambda()
    {
        Assert.Null(FunctionValidation.ValidateCreate(ValidCreate(), Options, Options.AccountId, out var draft, out var tags));

        Assert.Equal("my-fn", draft!.Name);
        Assert.Equal(3, draft.Timeout);
        Assert.Equal(128, draft.MemorySize);
        Assert.Equal(512, draft.EphemeralStorageSize);
        Assert.Equal("x86_64", draft.Architecture);
        Assert.Equal("Text", draft.LogFormat);
        Assert.Equal("/aws/lambda/my-fn", draft.LogGroupName);
        Assert.Empty(draft.EnvironmentVariables);
        Assert.Empty(tags);
    }

    [Fact]
    public void ValidateCreate_FunctionNameAsArn_UsesBareName()
    {
        var request = ValidCreate();
        request.FunctionName = "arn:aws:lambda:us-east-1:000000000000:function:from-arn";

        Assert.Null(FunctionValidation.ValidateCreate(request, Options, Options.AccountId, out var draft, out _));
        Assert.Equal("from-arn", draft!.Name);
    }

    [Theory]
    [InlineData("java21")]
    [InlineData("nodejs24.x")]
    [InlineData("cobol")]
    public void ValidateCreate_UnsupportedRuntime_EnumMessage(string runtime)
    {
        var message = CreateError(r => r.Runtime = runtime);
        Assert.StartsWith($"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [nodejs18.x", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("python3.7")]
    [InlineData("nodejs14.x")]
    [InlineData("go1.x")]
    public void ValidateCreate_DeprecatedRuntime_NoLongerSupported(string runtime) =>
        Assert.Equal($"The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions.",
            CreateError(r => r.Runtime = runtime));

    [Fact]
    public void ValidateCreate_MissingRuntimeOrHandler_Mandatory()
    {
        Assert.Equal("Runtime and Handler are mandatory parameters for functions created with deployment packages.", CreateError(r => r.Runtime = null));
        Assert.Equal("Runtime and Handler are mandatory parameters for functions created with deployment packages.", CreateError(r => r.Handler = null));
    }

    [Theory]
    [InlineData("role")]
    [InlineData("arn:aws:iam::123:role/x")]
    [InlineData("arn:aws:iam::000000000000:user/x")]
    public void ValidateCreate_BadRole_Pattern(string role) =>
        Assert.Contains("at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern", CreateError(r => r.Role = role), StringComparison.Ordinal);

    [Theory]
    [InlineData("has space")]
    [InlineData("")]
    public void ValidateCreate_BadHandler_Pattern(string handler) =>
        Assert.Contains("at 'handler'", CreateError(r => r.Handler = handler), StringComparison.Ordinal);

    [Fact]
    public void ValidateCreate_LongHandler_Length() =>
        Assert.Contains("Member must have length less than or equal to 128", CreateError(r => r.Handler = new string('h', 129)), StringComparison.Ordinal);

    [Theory]
    [InlineData(127, "greater than or equal to 128")]
    [InlineData(10241, "'MemorySize' value failed to satisfy constraint: Member must have value less than or equal to 10240")]
    public void ValidateCreate_MemoryOutOfRange(int memory, string expected) =>
        Assert.Contains(expected, CreateError(r => r.MemorySize = memory), StringComparison.Ordinal);

    [Theory]
    [InlineData(0, "greater than or equal to 1")]
    [InlineData(-5, "greater than or equal to 1")]
    [InlineData(901, "less than or equal to 900")]
    public void ValidateCreate_TimeoutOutOfRange(int timeout, string expected) =>
        Assert.Contains(expected, CreateError(r => r.Timeout = timeout), StringComparison.Ordinal);

    [Theory]
    [InlineData(511)]
    [InlineData(10241)]
    public void ValidateCreate_EphemeralStorageOutOfRange(int size) =>
        Assert.Contains("ephemeralStorage.size", CreateError(r => r.EphemeralStorage = new EphemeralStorageDto { Size = size }), StringComparison.Ordinal);

    [Fact]
    public void ValidateCreate_LongDescription_Refused() =>
        Assert.Contains("at 'description'", CreateError(r => r.Description = new string('d', 257)), StringComparison.Ordinal);

    [Fact]
    public void ValidateCreate_Architectures_ExactlyOneKnown()
    {
        Assert.Contains("length less than or equal to 1", CreateError(r => r.Architectures = ["x86_64", "arm64"]), StringComparison.Ordinal);
        Assert.Contains("length greater than or equal to 1", CreateError(r => r.Architectures = []), StringComparison.Ordinal);
        Assert.Contains("enum value set: [x86_64, arm64]", CreateError(r => r.Architectures = ["mips"]), StringComparison.Ordinal);

        var request = ValidCreate();
        request.Architectures = ["arm64"];
        Assert.Null(FunctionValidation.ValidateCreate(request, Options, Options.AccountId, out var draft, out _));
        Assert.Equal("arm64", draft!.Architecture);
    }

    [Fact]
    public void ValidateCreate_UnsupportedFeatures_RefusedWithReason()
    {
        Assert.Contains("Image is not supported", CreateError(r => r.PackageType = "Image"), StringComparison.Ordinal);
        Assert.Contains("ImageUri", CreateError(r => r.Code = new FunctionCodeDto { ImageUri = "x" }), StringComparison.Ordinal);
        // Code from Lamina's S3: bucket and key (read by the handler), never together with the zip, never half of it.
        Assert.Null(CreateError(r => r.Code = new FunctionCodeDto { S3Bucket = "b", S3Key = "k" }));
        Assert.Contains("only one source", CreateError(r => r.Code = new FunctionCodeDto { ZipFile = [1], S3Bucket = "b", S3Key = "k" }), StringComparison.Ordinal);
        Assert.Contains("S3Bucket and S3Key", CreateError(r => r.Code = new FunctionCodeDto { S3Bucket = "b" }), StringComparison.Ordinal);
        // Layers are resolved against the layer registry by the handler (LayerValidationTests), not refused here.
        Assert.Null(CreateError(r => r.Layers = ["arn:aws:lambda:us-east-1:000000000000:layer:l:1"]));
        Assert.Contains("VpcConfig", CreateError(r => r.VpcConfig = new VpcConfigDto { SubnetIds = ["s"] }), StringComparison.Ordinal);
        Assert.Null(CreateError(r => r.VpcConfig = new VpcConfigDto { SubnetIds = [], SecurityGroupIds = [] }));
        Assert.Null(CreateError(r => r.Layers = []));
    }

    [Fact]
    public void ValidateEnvironment_ReservedKeys_ListedSorted()
    {
        var error = FunctionValidation.ValidateEnvironment(new Dictionary<string, string?> { ["AWS_REGION"] = "x", ["_HANDLER"] = "y", ["OK_KEY"] = "z" }, out _);

        Assert.Equal("Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: AWS_REGION,_HANDLER",
            error!.Message);
    }

    [Theory]
    [InlineData("1ABC")]
    [InlineData("A")]
    [InlineData("A-B")]
    [InlineData("")]
    public void ValidateEnvironment_BadKey_Pattern(string key) =>
        Assert.Contains("Map keys must satisfy constraint", FunctionValidation.ValidateEnvironment(new Dictionary<string, string?> { [key] = "v" }, out _)!.Message, StringComparison.Ordinal);

    [Fact]
    public void ValidateEnvironment_Over4KB_MeasuredAsJson()
    {
        // {"BIG":"…"} is 10 bytes of JSON around the value.
        var fits = new Dictionary<string, string?> { ["BIG"] = new string('x', 4096 - 10) };
        var over = new Dictionary<string, string?> { ["BIG"] = new string('x', 4096 - 9) };

        Assert.Null(FunctionValidation.ValidateEnvironment(fits, out _));
        var error = FunctionValidation.ValidateEnvironment(over, out _);
        Assert.StartsWith("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {\"BIG\":\"xxx",
            error!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ApplyUpdate_AbsentMembersKept_EnvironmentReplacedWhole()
    {
        var config = Current();

        var error = FunctionValidation.ApplyUpdate(ref config, new UpdateFunctionConfigurationRequest
        {
            MemorySize = 1024,
            Environment = new EnvironmentDto { Variables = new Dictionary<string, string?> { ["NEW_ONE"] = "2" } },
        });

        Assert.Null(error);
        Assert.Equal(1024, config.MemorySize);
        Assert.Equal("app.handler", config.Handler);
        Assert.Equal(new Dictionary<string, string> { ["NEW_ONE"] = "2" }, config.EnvironmentVariables);
    }

    [Fact]
    public void ApplyUpdate_EnvironmentWithoutVariables_Clears()
    {
        var config = Current();

        Assert.Null(FunctionValidation.ApplyUpdate(ref config, new UpdateFunctionConfigurationRequest { Environment = new EnvironmentDto() }));
        Assert.Empty(config.EnvironmentVariables);
    }

    [Fact]
    public void ApplyUpdate_Refused_LeavesConfigUsableByCaller()
    {
        var config = Current();
        var error = FunctionValidation.ApplyUpdate(ref config, new UpdateFunctionConfigurationRequest { Timeout = 1000 });
        Assert.NotNull(error);
    }

    [Fact]
    public void ApplyUpdate_LogLevelsNeedJson()
    {
        var config = Current();
        Assert.Contains("LogLevel is not supported when LogFormat is set to \"Text\"",
            FunctionValidation.ApplyUpdate(ref config, new UpdateFunctionConfigurationRequest { LoggingConfig = new LoggingConfigDto { ApplicationLogLevel = "DEBUG" } })!.Message, StringComparison.Ordinal);

        Assert.Null(FunctionValidation.ApplyUpdate(ref config, new UpdateFunctionConfigurationRequest { LoggingConfig = new LoggingConfigDto { LogFormat = "JSON" } }));
        Assert.Equal(("JSON", "INFO", "INFO"), (config.LogFormat, config.ApplicationLogLevel, config.SystemLogLevel));

        // Already JSON: a level alone is fine.
        Assert.Null(FunctionValidation.ApplyUpdate(ref config, new UpdateFunctionConfigurationRequest { LoggingConfig = new LoggingConfigDto { ApplicationLogLevel = "DEBUG" } }));
        Assert.Equal("DEBUG", config.ApplicationLogLevel);
    }

    [Fact]
    public void ToDto_LastModified_LambdaTimestampFormat()
    {
        var config = Current() with { LastModified = new DateTimeOffset(2019, 9, 24, 20, 20, 35, 54, TimeSpan.FromHours(2)) };

        var dto = config.ToDto("arn:aws:lambda:us-east-1:000000000000:function:my-fn");

        Assert.Equal("2019-09-24T18:20:35.054+0000", dto.LastModified);
        Assert.Equal("$LATEST", dto.Version);
        Assert.Equal(["x86_64"], dto.Architectures!);
        Assert.Equal("Active", dto.State);
        Assert.Equal("Successful", dto.LastUpdateStatus);
        Assert.Equal("Zip", dto.PackageType);
        Assert.Equal("/aws/lambda/my-fn", dto.LoggingConfig!.LogGroup);
    }

    [Fact]
    public void ToDto_NoVariables_EnvironmentOmitted()
    {
        var dto = (Current() with { EnvironmentVariables = new Dictionary<string, string>() }).ToDto("arn");
        Assert.Null(dto.Environment);
    }
}
