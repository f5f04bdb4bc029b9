using Lamina.Runtime.Bootstrap;

namespace Lamina.Tests.DotNetRuntime;

public class HandlerStringTests
{
    [Theory]
    [InlineData("HelloWorld::HelloWorld.Function::Handler", "HelloWorld", "HelloWorld.Function", "Handler")]
    [InlineData("My.Functions.dll::My.Functions.Orders+Nested::Run", "My.Functions", "My.Functions.Orders+Nested", "Run")]
    [InlineData(" A :: B :: C ", "A", "B", "C")]
    public void Parse_ValidHandler_SplitsAssemblyTypeMethod(string handler, string assembly, string type, string method) =>
        Assert.Equal((assembly, type, method), HandlerBinder.Parse(handler));

    [Theory]
    [InlineData("", "Empty lambda function handler")]
    [InlineData("index.handler", "Invalid lambda function handler: 'index.handler'")]
    [InlineData("A::B", "Invalid lambda function handler")]
    [InlineData("A::B::C::D", "Invalid lambda function handler")]
    [InlineData("::B::C", "the assembly is missing")]
    [InlineData("A::::C", "the type is missing")]
    [InlineData("A::B::", "the method is missing")]
    public void Parse_InvalidHandler_ThrowsValidationException(string handler, string message)
    {
        var error = Assert.Throws<LambdaValidationException>(() => HandlerBinder.Parse(handler));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
